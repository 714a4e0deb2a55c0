"""Model files: round trip, float16 storage, metadata, and rejection of bad files."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest

from synthseg_bids import __version__
from synthseg_bids.core.labels import LabelTable
from synthseg_bids.network import (
    FORMAT_VERSION,
    ModelFileError,
    ModelInfo,
    NetworkSettings,
    build_unet,
    load_model,
    read_model_file,
    save_model,
)

TABLE = LabelTable.from_values([0, 2, 3, 41, 42])
SETTINGS = NetworkSettings(n_levels=3, base_features=4)


@pytest.fixture(scope="module")
def trained_like():
    """A small U-Net whose weights and batch-norm statistics all matter (not defaults)."""
    model = build_unet(SETTINGS, len(TABLE), seed=3)
    rng = np.random.default_rng(0)
    for variable in model.weights:
        value = np.asarray(variable)
        if variable.path.endswith("moving_variance"):
            variable.assign(rng.uniform(0.5, 2.0, value.shape).astype(np.float32))
        elif variable.path.endswith(("moving_mean", "beta", "bias")):
            variable.assign(rng.normal(0, 0.3, value.shape).astype(np.float32))
        elif variable.path.endswith("gamma"):
            variable.assign(rng.uniform(0.5, 1.5, value.shape).astype(np.float32))
    info = ModelInfo(
        network=SETTINGS,
        label_table=TABLE,
        generator={"settings": {"output_shape": [16, 16, 16]}},
        training={"kind": "synthetic", "settings": {"epochs": 3}},
        provenance={"training_data": [{"name": "a.nii.gz", "sha256": "00"}], "epochs_trained": 3},
        validation={"mean_dice": 0.5},
    )
    image = rng.random((1, 24, 16, 32, 1)).astype(np.float32)
    return model, info, image


def test_round_trip_gives_identical_predictions(tmp_path, trained_like):
    model, info, image = trained_like
    path = save_model(tmp_path / "model.npz", model, info)
    loaded, loaded_info = load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(image)), np.asarray(model(image)))
    assert loaded_info == info
    assert loaded_info.package_version == __version__
    assert loaded_info.format_version == FORMAT_VERSION
    assert loaded_info.label_table.values.tolist() == [0, 2, 3, 41, 42]


def test_file_layout_has_no_pickles(tmp_path, trained_like):
    model, info, _ = trained_like
    path = save_model(tmp_path / "model.npz", model, info)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert "metadata.json.npy" in names
    assert "weight/enc0_conv0/0.npy" in names  # kernel of the first conv
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["metadata.json"]))
        assert all(archive[k].dtype != object for k in archive.files)
    assert meta["format"] == "synthseg-bids-model"
    assert len(meta["weights"]) == len(model.weights)
    assert meta["model"]["network"]["base_features"] == 4


def test_float16_storage_halves_size_within_tolerance(tmp_path, trained_like):
    model, info, image = trained_like
    full = save_model(tmp_path / "full.npz", model, info)
    half = save_model(tmp_path / "half.npz", model, info, weights_dtype="float16")
    ratio = half.stat().st_size / full.stat().st_size
    assert ratio < 0.7  # headers weigh on this tiny model; 0.50 for the 13 M-weight network
    loaded, _ = load_model(half)
    assert all(str(np.asarray(v).dtype) == "float32" for v in loaded.weights)
    reference = np.asarray(model(image))
    approx = np.asarray(loaded(image))
    assert np.abs(approx - reference).max() < 5e-3
    assert not np.array_equal(approx, reference)  # float16 really was used
    assert np.mean(approx.argmax(-1) != reference.argmax(-1)) < 0.01


def _rewrite(path, out, change):
    """Copy an npz archive with its arrays/metadata changed by ``change(arrays, meta)``."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays.pop("metadata.json")))
    change(arrays, meta)
    arrays["metadata.json"] = np.array(json.dumps(meta))
    with open(out, "wb") as stream:
        np.savez(stream, **arrays)
    return out


@pytest.fixture
def saved(tmp_path, trained_like):
    model, info, _ = trained_like
    return save_model(tmp_path / "model.npz", model, info)


def _version(arrays, meta):
    meta["format_version"] = 99


def _missing_weight(arrays, meta):
    del arrays["weight/dec0_conv1/0"]
    meta["weights"] = [r for r in meta["weights"] if r["key"] != "weight/dec0_conv1/0"]


def _unlisted_array(arrays, meta):
    del arrays["weight/dec0_conv1/0"]


def _wrong_shape(arrays, meta):
    arrays["weight/likelihood/0"] = np.zeros((1, 1, 1, 4, 7), np.float32)


def _nan(arrays, meta):
    arrays["weight/enc0_conv0/1"] = np.full_like(arrays["weight/enc0_conv0/1"], np.nan)


def _other_network(arrays, meta):
    meta["model"]["network"]["base_features"] = 5


def _bad_labels(arrays, meta):
    meta["model"]["label_table"][1]["value"] = 9999


def _format(arrays, meta):
    meta["format"] = "something-else"


@pytest.mark.parametrize(
    "change, message",
    [
        (_version, "format version 99"),
        (_missing_weight, "missing weight/dec0_conv1/0"),
        (_unlisted_array, "weight list"),
        (_wrong_shape, "likelihood/0 has shape"),
        (_nan, "NaN"),
        (_other_network, "do not match"),
        (_bad_labels, "invalid model metadata"),
        (_format, "not a synthseg-bids model file"),
    ],
)
def test_tampered_files_are_rejected(tmp_path, saved, change, message):
    bad = _rewrite(saved, tmp_path / "bad.npz", change)
    with pytest.raises(ModelFileError, match=message) as err:
        load_model(bad)
    assert str(bad) in str(err.value)


def test_corrupt_and_truncated_files_are_rejected(tmp_path, saved):
    data = bytearray(saved.read_bytes())
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    flipped = tmp_path / "flipped.npz"
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    flipped.write_bytes(bytes(data))
    text = tmp_path / "text.npz"
    text.write_text("not a model")
    for path in (truncated, flipped, text, tmp_path / "missing.npz", tmp_path):
        with pytest.raises(ModelFileError) as err:
            load_model(path)
        assert str(path) in str(err.value)


def test_object_and_pickle_arrays_are_rejected(tmp_path, saved):
    with_object = tmp_path / "object.npz"

    def add_object(arrays, meta):
        arrays["weight/enc0_conv0/0"] = np.array([{"evil": 1}], dtype=object)

    with np.load(saved, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    add_object(arrays, None)
    with open(with_object, "wb") as stream:
        np.savez(stream, **arrays)
    with pytest.raises(ModelFileError, match="pickled or object"):
        load_model(with_object)
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"weights": np.zeros(3)}))
    with pytest.raises(ModelFileError, match="pickled"):
        read_model_file(pickled)


def test_metadata_must_be_a_unicode_scalar(tmp_path, saved):
    def to_bytes(arrays, meta):
        pass

    bad = _rewrite(saved, tmp_path / "bytes.npz", to_bytes)
    with np.load(bad, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["metadata.json"] = np.frombuffer(str(arrays["metadata.json"]).encode(), dtype=np.uint8)
    with open(bad, "wb") as stream:
        np.savez(stream, **arrays)
    with pytest.raises(ModelFileError, match="unicode string scalar"):
        read_model_file(bad)


def test_save_refuses_a_model_that_does_not_match_info(tmp_path, trained_like):
    _, info, _ = trained_like
    other = build_unet(NetworkSettings(n_levels=2, base_features=4), len(TABLE), seed=0)
    with pytest.raises(ValueError, match="does not match"):
        save_model(tmp_path / "x.npz", other, info)
    with pytest.raises(ValueError, match=".npz"):
        save_model(tmp_path / "x.h5", other, info)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_save_is_atomic_on_failure(tmp_path, trained_like):
    model, info, _ = trained_like
    path = save_model(tmp_path / "model.npz", model, info)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        save_model(path, model, info, extra_arrays={"weight/x": np.zeros(1)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
