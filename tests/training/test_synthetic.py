"""Synthetic training: generator + U-Net in one jit-compiled step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import make_toy_label_map, toy_affine
from toy_data import TOY_TABLE

from synthseg_bids.core.io import ImageError, save_image
from synthseg_bids.generator import GenerationSpec, GeneratorSettings, LabelsToImage
from synthseg_bids.network import NetworkSettings, build_unet, load_model
from synthseg_bids.training import TrainingSettings, read_checkpoint, train_synthetic
from synthseg_bids.training.data import LabelMapBatches
from synthseg_bids.training.loop import make_optimizer
from synthseg_bids.training.synthetic import SyntheticTrainer

NETWORK = NetworkSettings(n_levels=2, base_features=8)
GENERATOR = GeneratorSettings(output_shape=(16, 16, 16))


def _maps(folder, n=2, shape=(20, 20, 20)):
    folder.mkdir(parents=True, exist_ok=True)
    return [save_image(make_toy_label_map(shape, seed=i), toy_affine(), folder / f"map{i}.nii.gz") for i in range(n)]


def test_label_map_batches_depend_only_on_seed_epoch_and_step():
    indices = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 2), np.uint8)
    data = LabelMapBatches(indices, batch_size=3, steps_per_epoch=4, seed=1)
    assert len(data) == 4
    data.epoch = 2
    first = data[3]
    data[0], data[1]  # fetching other batches does not change batch 3
    assert np.array_equal(data[3], first) and first.shape == (3, 2, 2, 2)
    expected = np.random.default_rng([1, 2, 3]).integers(0, 5, size=3)
    assert np.array_equal(first[:, 0, 0, 0], expected)
    data.epoch = 3
    assert not all(np.array_equal(data[s], LabelMapBatches(indices, 3, 4, 1)[s]) for s in range(4))


def test_synthetic_training_writes_a_self_describing_model(tmp_path):
    maps = _maps(tmp_path / "maps")
    settings = TrainingSettings(epochs=1, wl2_epochs=0, steps_per_epoch=2, seed=2)
    path = train_synthetic(maps, tmp_path / "run", GENERATOR, NETWORK, settings)
    model, info = load_model(path)
    assert info.training["kind"] == "synthetic"
    assert info.generator["settings"]["output_shape"] == [16, 16, 16]
    assert 258 in info.generator["generation_labels"]  # extra-cerebral label generated, segmented as background
    assert info.label_table.values[0] == 0 and info.resolution_mm == pytest.approx(1.0)
    assert sorted(d["name"] for d in info.provenance["training_data"]) == ["map0.nii.gz", "map1.nii.gz"]
    assert all(len(d["sha256"]) == 64 for d in info.provenance["training_data"])
    checkpoint = read_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_0001.npz")
    state = checkpoint.contents.extra["checkpoint"]["state_variables"]
    assert any("seed_generator" in record["name"] for record in state)  # the generator's random state is saved
    out = np.asarray(model(np.zeros((1, 16, 16, 16, 1), np.float32)))
    assert out.shape == (1, 16, 16, 16, len(info.label_table))


@pytest.mark.parametrize("phase", ["wl2", "main"])
def test_compiled_train_steps_on_all_background_crops_stay_finite(tmp_path, phase):
    # Regression: the weighted-L2 warm-up gave loss NaN (and NaN weights) from the first
    # graph-compiled step on crops without foreground, common for small crops of big maps.
    spec = GenerationSpec.from_label_maps(_maps(tmp_path / "maps", n=1))
    assert spec.generation_labels[0] == 0  # index 0: background
    settings = TrainingSettings(epochs=1, wl2_epochs=1 if phase == "wl2" else 0, steps_per_epoch=2, seed=3)
    unet = build_unet(NetworkSettings(n_levels=2, base_features=4), len(spec.label_table), seed=3)
    trainer = SyntheticTrainer(unet, LabelsToImage(spec, GENERATOR, seed=3), settings)
    trainer.phase = phase
    trainer.compile(optimizer=make_optimizer(settings), jit_compile=False)
    background = np.zeros((1, 20, 20, 20), np.uint8)
    losses = [float(trainer.train_on_batch(background)) for _ in range(2)]
    assert np.isfinite(losses).all(), losses
    assert all(np.isfinite(np.asarray(w)).all() for w in unet.trainable_weights)
    # wl2: logits start near 0, targets +-5: about 25; Dice: near 1 (labels absent from the target)
    assert 20 < losses[0] < 30 if phase == "wl2" else 0 < losses[0] <= 1


@pytest.mark.slow
def test_synthetic_training_reduces_the_loss(tmp_path):
    maps = _maps(tmp_path / "maps")
    spec = GenerationSpec.from_label_maps(maps, label_table=TOY_TABLE)  # only the labels present
    settings = TrainingSettings(epochs=4, wl2_epochs=1, steps_per_epoch=25, seed=2, learning_rate=3e-3)
    train_synthetic(maps, tmp_path / "run", GENERATOR, NETWORK, settings, spec=spec)
    log = pd.read_csv(tmp_path / "run" / "training_log.tsv", sep="\t")
    main = log[log["phase"] == "main"]["loss"].to_numpy()
    assert main[-1] < main[0] - 0.05, log


def test_label_maps_outside_the_spec_name_the_file(tmp_path):
    maps = _maps(tmp_path / "maps", n=1)
    spec = GenerationSpec.from_label_maps(maps)
    other = make_toy_label_map((20, 20, 20), seed=5)
    other[0, 0, 0] = 17  # hippocampus: not in the spec
    odd = save_image(other, toy_affine(), tmp_path / "odd.nii.gz")
    with pytest.raises(ImageError, match="odd.nii.gz"):
        train_synthetic([odd], tmp_path / "run", GENERATOR, NETWORK, TrainingSettings(epochs=1, wl2_epochs=0),
                        spec=spec)


def test_output_shape_must_fit_the_network(tmp_path):
    maps = _maps(tmp_path / "maps", n=1)
    with pytest.raises(ValueError, match="multiples of 4"):
        train_synthetic(maps, tmp_path / "run", GeneratorSettings(output_shape=(18, 16, 16)),
                        NetworkSettings(n_levels=3, base_features=4), TrainingSettings(epochs=1, wl2_epochs=0))
