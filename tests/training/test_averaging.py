"""Weight averaging over the last checkpoints, checked against numpy means of the files' arrays."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from helpers import make_toy_label_map, toy_affine

from synthseg_bids.core.io import save_image
from synthseg_bids.core.labels import LabelTable
from synthseg_bids.core.settings import SettingsError
from synthseg_bids.generator import GeneratorSettings
from synthseg_bids.network import ModelFileError, NetworkSettings, build_unet, load_model, save_model
from synthseg_bids.network.model_file import ModelInfo
from synthseg_bids.training import TrainingSettings, train_synthetic
from synthseg_bids.training.averaging import average_weights

NETWORK = NetworkSettings(n_levels=2, base_features=4)


def _weights(path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {key: archive[key].astype(np.float64) for key in archive.files if key.startswith("weight/")}


def _mean_of(paths) -> dict[str, np.ndarray]:
    files = [_weights(path) for path in paths]
    return {key: np.mean([f[key] for f in files], axis=0) for key in files[0]}


def test_weights_are_the_mean_of_the_files(tmp_path):
    info = ModelInfo(network=NETWORK, label_table=LabelTable.from_values([0, 2, 3]))
    paths = [save_model(tmp_path / f"m{seed}.npz", build_unet(NETWORK, 3, seed=seed), info) for seed in range(3)]
    model = build_unet(NETWORK, 3, seed=9)

    assert average_weights(model, paths) == 3

    out = save_model(tmp_path / "mean.npz", model, info)
    want, got = _mean_of(paths), _weights(out)
    assert want.keys() == got.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7)


def test_a_file_of_another_network_is_named(tmp_path):
    other = NetworkSettings(n_levels=2, base_features=6)
    info = ModelInfo(network=other, label_table=LabelTable.from_values([0, 2, 3]))
    path = save_model(tmp_path / "other.npz", build_unet(other, 3, seed=0), info)
    with pytest.raises(ModelFileError, match="other.npz"):
        average_weights(build_unet(NETWORK, 3, seed=0), [path])
    with pytest.raises(ValueError, match="no model files"):
        average_weights(build_unet(NETWORK, 3, seed=0), [])


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"checkpoint_every": 2}, "checkpoint every epoch"),
        ({"keep_checkpoints": 2}, "keep_checkpoints"),
        ({"epochs": 4, "wl2_epochs": 2}, "main phase"),
        ({"average_last": -1}, "average_last must be >= 0"),
    ],
)
def test_impossible_averages_are_refused(changes, match):
    with pytest.raises(SettingsError, match=match):
        TrainingSettings(**{"epochs": 5, "wl2_epochs": 0, "average_last": 3, **changes})


def test_a_finished_run_is_averaged_on_resume(tmp_path):
    # The way a run that was stopped early is finished: train, then resume with `epochs` set to
    # the epochs done and `average_last`; no step is trained again.
    maps = [save_image(make_toy_label_map((24, 24, 24), seed=i), toy_affine(), tmp_path / f"map{i}.nii.gz")
            for i in range(2)]
    generator = GeneratorSettings(output_shape=(16, 16, 16))
    settings = TrainingSettings(epochs=3, wl2_epochs=0, steps_per_epoch=1, seed=3, save_dtype="float32")
    run = tmp_path / "run"
    train_synthetic(maps, run, generator, NETWORK, settings)
    checkpoints = [run / "checkpoints" / f"epoch_{e:04d}.npz" for e in (1, 2, 3)]
    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in checkpoints[1:]]

    with pytest.raises(SettingsError, match="epoch_0003.npz: a checkpoint of epoch 3, beyond the 2 epochs"):
        train_synthetic(maps, run, generator, NETWORK, dataclasses.replace(settings, epochs=2))

    path = train_synthetic(maps, run, generator, NETWORK, dataclasses.replace(settings, average_last=2))

    want, got = _mean_of(checkpoints[1:]), _weights(path)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7)
    last = _weights(checkpoints[2])
    assert any(not np.allclose(got[key], last[key]) for key in want)  # not merely the last epoch's weights
    info = load_model(path)[1]
    assert info.provenance["weight_average"] == {
        "epochs": [2, 3],
        "checkpoints": [{"name": p.name, "sha256": d} for p, d in zip(checkpoints[1:], digests)],
    }
    assert info.provenance["steps_trained"] == 3
    assert [line.split("\t")[0] for line in (run / "training_log.tsv").read_text().splitlines()[1:]] == ["1", "2", "3"]
