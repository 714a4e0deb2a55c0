"""Supervised training: the loss decreases, phases, exact resume, fine-tuning checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from keras import ops
from toy_data import TOY_TABLE, toy_pair

from synthseg_bids.core.io import ImageError, load_image
from synthseg_bids.core.labels import LabelTable
from synthseg_bids.network import ModelFileError, NetworkSettings, build_unet, load_model
from synthseg_bids.training import AugmentationSettings, TrainingSettings, read_checkpoint, train_supervised
from synthseg_bids.training.data import label_channels, load_training_pairs
from synthseg_bids.training.losses import soft_dice_loss

NETWORK = NetworkSettings(n_levels=2, base_features=8)
CROP = AugmentationSettings(crop_shape=(16, 16, 16))


def _settings(**changes):
    base = dict(epochs=2, wl2_epochs=0, steps_per_epoch=3, seed=3, learning_rate=1e-3, jit_compile="off")
    return TrainingSettings(**{**base, **changes})


def _dice_loss(model, pair):
    image = pair.image[None, ..., None]
    target = np.eye(len(TOY_TABLE), dtype=np.float32)[pair.channels][None]
    return float(ops.convert_to_numpy(soft_dice_loss(target, model(image, training=False)))[0])


def test_training_reduces_the_loss_and_switches_phase(tmp_path):
    image, labels = toy_pair(tmp_path)
    # instance normalisation: no running statistics, which a dozen steps would leave far from converged
    network = NETWORK.replace(normalisation="instance")
    settings = _settings(epochs=2, wl2_epochs=1, steps_per_epoch=12, learning_rate=5e-3)
    path = train_supervised([image], [labels], tmp_path / "run", network, settings, CROP, label_table=TOY_TABLE)
    pair = load_training_pairs([image], [labels], TOY_TABLE)[0]
    before = _dice_loss(build_unet(network, len(TOY_TABLE), seed=settings.seed), pair)  # the initial weights
    model, info = load_model(path)
    after = _dice_loss(model, pair)
    assert after < 0.85 * before, (before, after)
    log = pd.read_csv(tmp_path / "run" / "training_log.tsv", sep="\t")
    assert log["epoch"].tolist() == [1, 2] and log["phase"].tolist() == ["wl2", "main"]
    first = read_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_0001.npz")
    second = read_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_0002.npz")
    assert (first.state.phase, second.state.phase) == ("wl2", "main")
    # The main phase restarts the optimizer (as SynthSeg): 12 steps since the switch, not 24.
    assert int(first.contents.arrays["optimizer/0000"]) == 12
    assert int(second.contents.arrays["optimizer/0000"]) == 12
    assert second.state.global_step == 24
    assert info.provenance["epochs_trained"] == 2 and info.training["kind"] == "supervised"
    assert [d["name"] for d in info.provenance["training_data"]] == [image.name, labels.name]


def _optimizer(checkpoint):
    names = [r["name"] for r in checkpoint.contents.extra["checkpoint"]["optimizer_variables"]]
    # names start with the optimizer's automatic name ("adam_3/..."): drop it
    return {name.split("/", 1)[1]: checkpoint.contents.arrays[f"optimizer/{i:04d}"] for i, name in enumerate(names)}


def test_resume_continues_epochs_and_optimizer_state(tmp_path):
    image, labels = toy_pair(tmp_path)
    settings = _settings()
    train_supervised([image], [labels], tmp_path / "straight", NETWORK, settings, CROP, label_table=TOY_TABLE)
    split = tmp_path / "split"
    train_supervised([image], [labels], split, NETWORK, settings.replace(epochs=1), CROP, label_table=TOY_TABLE)
    first = read_checkpoint(split / "checkpoints" / "epoch_0001.npz")
    final = train_supervised([image], [labels], split, NETWORK, settings, CROP, label_table=TOY_TABLE)

    log = pd.read_csv(split / "training_log.tsv", sep="\t")
    assert log["epoch"].tolist() == [1, 2]  # epoch 1 was not trained again
    resumed = read_checkpoint(split / "checkpoints" / "epoch_0002.npz")
    straight = read_checkpoint(tmp_path / "straight" / "checkpoints" / "epoch_0002.npz")
    assert resumed.state.epoch == 2 and resumed.state.global_step == 6
    opt_first, opt_resumed, opt_straight = _optimizer(first), _optimizer(resumed), _optimizer(straight)
    assert int(opt_first["iteration"]) == 3
    # iteration count continued (6, not 3 as after a restart) and the Adam moments match the uninterrupted run
    assert int(opt_resumed["iteration"]) == int(opt_straight["iteration"]) == 6
    moment = "enc0_conv0_kernel_momentum"
    np.testing.assert_allclose(opt_resumed[moment], opt_straight[moment], rtol=1e-4, atol=1e-7)
    assert not np.allclose(opt_resumed[moment], opt_first[moment])
    for key, value in straight.contents.arrays.items():
        if key.startswith("weight/"):
            np.testing.assert_allclose(resumed.contents.arrays[key], value, rtol=1e-4, atol=1e-6)
    _, info = load_model(final)
    assert [s["first_epoch"] for s in info.provenance["sessions"]] == [1, 2]


def test_resume_rejects_a_corrupt_checkpoint(tmp_path):
    image, labels = toy_pair(tmp_path)
    bad = tmp_path / "run" / "checkpoints" / "epoch_0002.npz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ModelFileError, match="epoch_0002.npz"):
        train_supervised([image], [labels], tmp_path / "run", NETWORK, _settings(), CROP, label_table=TOY_TABLE)


def test_initial_model_must_have_the_same_labels_and_network(tmp_path):
    from synthseg_bids.network import ModelInfo, save_model

    image, labels = toy_pair(tmp_path)
    other_table = LabelTable.from_values([0, 2, 3, 4, 16, 24, 41, 42, 43, 17])
    other = save_model(tmp_path / "other.npz", build_unet(NETWORK, len(other_table), seed=0),
                       ModelInfo(NETWORK, other_table))
    with pytest.raises(ModelFileError, match="other.npz.*other labels"):
        train_supervised([image], [labels], tmp_path / "a", NETWORK, _settings(), CROP, label_table=TOY_TABLE,
                         initial_model=other)
    wider = NetworkSettings(n_levels=2, base_features=6)
    arch = save_model(tmp_path / "arch.npz", build_unet(wider, len(TOY_TABLE), seed=0), ModelInfo(wider, TOY_TABLE))
    with pytest.raises(ModelFileError, match="arch.npz.*architecture.*base_features"):
        train_supervised([image], [labels], tmp_path / "b", NETWORK, _settings(), CROP, label_table=TOY_TABLE,
                         initial_model=arch)


def test_fine_tuning_starts_from_the_initial_weights(tmp_path):
    from synthseg_bids.network import ModelInfo, save_model

    image, labels = toy_pair(tmp_path)
    start = build_unet(NETWORK, len(TOY_TABLE), seed=99)
    earlier = {"steps_trained": 1234, "sessions": [{"backend": "jax", "first_epoch": 1}]}
    initial = save_model(tmp_path / "start.npz", start, ModelInfo(NETWORK, TOY_TABLE, provenance=earlier))
    settings = _settings(epochs=1, steps_per_epoch=2, learning_rate=1e-9)
    final = train_supervised([image], [labels], tmp_path / "ft", NETWORK, settings, CROP, label_table=TOY_TABLE,
                             initial_model=initial)
    model, info = load_model(final)
    kernel = model.get_layer("enc0_conv0").kernel
    np.testing.assert_allclose(np.asarray(kernel), np.asarray(start.get_layer("enc0_conv0").kernel), atol=1e-6)
    assert info.provenance["initial_model"]["name"] == "start.npz"
    assert info.provenance["initial_model"]["sessions"] == earlier["sessions"]
    # the model's total: the initial model's 1234 steps and this run's 1 epoch of 2 steps
    assert info.provenance["steps_trained"] == 1236
    # resuming the fine-tuning run (one more epoch) keeps the starting point and counts on from it
    more = _settings(epochs=2, steps_per_epoch=2, learning_rate=1e-9)
    final = train_supervised([image], [labels], tmp_path / "ft", NETWORK, more, CROP, label_table=TOY_TABLE)
    _, info = load_model(final)
    assert info.provenance["initial_model"]["name"] == "start.npz"
    assert info.provenance["steps_trained"] == 1238
    # a third stage from the second's model keeps the whole chain and counts every step
    third = train_supervised([image], [labels], tmp_path / "third", NETWORK, settings, CROP, label_table=TOY_TABLE,
                             initial_model=final)
    _, info = load_model(third)
    chain = info.provenance["initial_model"]
    assert chain["name"] == "model.npz" and chain["steps_trained"] == 1238
    assert chain["initial_model"]["name"] == "start.npz" and chain["initial_model"]["steps_trained"] == 1234
    assert info.provenance["steps_trained"] == 1240


def test_labels_outside_the_table_name_the_file(tmp_path):
    image, labels = toy_pair(tmp_path)
    values = load_image(labels, dtype=None)
    with pytest.raises(ImageError, match="dseg.*not in the model's label table: \\[16\\]"):
        label_channels(np.asarray(values.data), LabelTable.from_values([0, 2, 3, 4, 24, 41, 42, 43]), labels)
    merged = label_channels(np.array([[[0, 25, 57]]]), TOY_TABLE, labels)  # lesions -> white matter
    assert merged.tolist() == [[[0, 1, 6]]]
    background = label_channels(np.array([[[0, 77]]]), TOY_TABLE, labels, unknown_labels="background")
    assert background.tolist() == [[[0, 0]]]
