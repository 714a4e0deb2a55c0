"""The process-wide segmenter caches: keyed by model file, its mtime and the settings, and bounded."""

from __future__ import annotations

import os

import pytest

import synthseg_bids.inference.official as official
import synthseg_bids.inference.segmenter as segmenter_module
from synthseg_bids.inference import InferenceSettings, cached_segmenter
from synthseg_bids.inference.model_choice import ModelFiles


class _Loaded:
    """Stands for a loaded segmenter: records what it was built from."""

    def __init__(self, model, settings=None, **files):
        self.model, self.settings, self.files = model, settings, files


@pytest.fixture
def loads(monkeypatch):
    made: list[_Loaded] = []

    def record(*args, **kwargs):
        made.append(_Loaded(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(segmenter_module, "Segmenter", record)
    monkeypatch.setattr(official, "OfficialSegmenter", record)
    segmenter_module._cached.cache_clear()
    official._cached_official.cache_clear()
    yield made
    segmenter_module._cached.cache_clear()
    official._cached_official.cache_clear()


def test_cached_segmenter_is_shared_per_file_version_and_settings(tmp_path, loads):
    model = tmp_path / "m.npz"
    model.write_bytes(b"x")
    fast = InferenceSettings(flip=False)
    first = cached_segmenter(model)
    assert cached_segmenter(str(model)) is first and cached_segmenter(model, InferenceSettings()) is first
    assert cached_segmenter(model, fast) is not first
    os.utime(model, ns=(1, 1))  # another version of the file
    assert cached_segmenter(model) is not first
    assert [(m.model, m.settings) for m in loads] == [(model, InferenceSettings()), (model, fast),
                                                     (model, InferenceSettings())]


def test_cached_segmenter_keeps_the_most_recently_used(tmp_path, loads):
    assert segmenter_module.CACHE_SIZE == 2
    models = []
    for name in "abc":
        models.append(tmp_path / f"{name}.npz")
        models[-1].write_bytes(name.encode())
    a, b = cached_segmenter(models[0]), cached_segmenter(models[1])
    assert cached_segmenter(models[0]) is a  # a is now the most recent
    cached_segmenter(models[2])  # drops b, the least recently used
    assert cached_segmenter(models[0]) is a and len(loads) == 3
    assert cached_segmenter(models[1]) is not b and len(loads) == 4


def test_cached_official_segmenter_is_bounded(tmp_path, loads):
    networks = []
    for name in ("x", "y", "z"):
        networks.append(tmp_path / f"{name}.h5")
        networks[-1].write_bytes(b"h5")
    files = [ModelFiles(path, official=True) for path in networks]
    first = official.cached_official_segmenter(files[0])
    assert official.cached_official_segmenter(files[0]) is first
    assert loads[0].model == networks[0].resolve() and loads[0].settings == InferenceSettings()
    assert loads[0].files == {"parcellation": None, "qc": None}
    for chosen in files[1:]:
        official.cached_official_segmenter(chosen)
    assert official.cached_official_segmenter(files[0]) is not first and len(loads) == 4
