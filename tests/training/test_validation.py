"""Checkpoint validation: Dice per checkpoint, best checkpoint, outputs; synthetic validation sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import make_toy_label_map, toy_affine

from synthseg_bids.core.io import load_image, load_label_map, save_image
from synthseg_bids.core.labels import LabelTable
from synthseg_bids.network import ModelFileError, ModelInfo, NetworkSettings, build_unet, save_model
from synthseg_bids.training.checkpoints import checkpoint_path
from synthseg_bids.training.validation import best_checkpoint, make_validation_set, validate_checkpoints

TABLE = LabelTable.from_values([0, 2, 41])
# One 1x1x1 convolution (identity + ReLU) then the 1x1x1 logits layer: logits_k = slope_k * x + bias_k,
# so each checkpoint's segmentation is a thresholding of the intensity that we choose.
PASS_THROUGH = NetworkSettings(n_levels=1, conv_per_level=1, conv_size=1, base_features=1, activation="relu",
                               normalisation="none")


def _checkpoint(model_dir, epoch, slopes, biases):
    model = build_unet(PASS_THROUGH, 3, seed=0)
    model.get_layer("enc0_conv0").kernel.assign(np.ones((1, 1, 1, 1, 1), np.float32))
    model.get_layer("enc0_conv0").bias.assign(np.zeros(1, np.float32))
    model.get_layer("likelihood").kernel.assign(np.array(slopes, np.float32).reshape(1, 1, 1, 1, 3))
    model.get_layer("likelihood").bias.assign(np.array(biases, np.float32))
    return save_model(checkpoint_path(model_dir, epoch), model, ModelInfo(PASS_THROUGH, TABLE))


def _validation_pair(folder):
    labels = np.zeros((12, 12, 12), np.int32)
    labels[4:8] = 2  # 576 voxels
    labels[8:] = 41  # 576 voxels
    labels[0, 0, :3] = 258  # extra-cerebral label of the reference: counted as background
    image = np.select([labels == 2, labels == 41], [0.5, 1.0], 0.0).astype(np.float32)
    return (save_image(image, toy_affine(), folder / "val_T1w.nii.gz"),
            save_image(labels, toy_affine(), folder / "val_dseg.nii.gz"))


def test_best_checkpoint_has_the_best_mean_dice(tmp_path):
    model_dir = tmp_path / "run"
    _checkpoint(model_dir, 1, [0, 0, 0], [1, 0, 0])            # everything background
    best = _checkpoint(model_dir, 2, [0, 10, 20], [0, -2.5, -10])  # x<0.25: 0, x<0.75: 2, else 41: perfect
    _checkpoint(model_dir, 3, [0, 10, 0], [0, -2.5, -10])      # 41 never wins: right WM labelled left
    image, labels = _validation_pair(tmp_path)

    table = validate_checkpoints(model_dir, [image], [labels])

    assert table["epoch"].tolist() == [1, 2, 3]
    assert table.attrs["best_epoch"] == 2 and best_checkpoint(table) == best
    n_background, n_a, n_b = 12**3 - 2 * 576, 576, 576
    hand = {
        1: [2 * n_background / (n_background + 12**3), 0.0, 0.0],
        2: [1.0, 1.0, 1.0],
        3: [1.0, 2 * n_a / (n_a + n_a + n_b), 0.0],
    }
    for _, row in table.iterrows():
        expected = hand[row["epoch"]]
        np.testing.assert_allclose(row[TABLE.names].to_numpy(float), expected, rtol=1e-9)
        assert row["mean_dice"] == pytest.approx(np.mean(expected[1:]))  # background excluded
    written = pd.read_csv(table.attrs["tsv"], sep="\t")
    assert written["mean_dice"].tolist() == pytest.approx(table["mean_dice"].tolist(), abs=1e-6)
    assert written.columns.tolist()[:3] == ["epoch", "checkpoint", "mean_dice"]
    with open(table.attrs["png"], "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"
    assert table.attrs["tsv"].startswith(str(model_dir / "validation"))


def test_unreadable_checkpoint_is_named(tmp_path):
    model_dir = tmp_path / "run"
    _checkpoint(model_dir, 1, [0, 10, 20], [0, -2.5, -10])
    broken = checkpoint_path(model_dir, 2)
    broken.write_bytes(b"garbage")
    image, labels = _validation_pair(tmp_path)
    with pytest.raises(ModelFileError, match="epoch_0002.npz"):
        validate_checkpoints(model_dir, [image], [labels])
    with pytest.raises(ValueError, match="no checkpoints"):
        validate_checkpoints(tmp_path / "empty", [image], [labels])


def test_synthetic_validation_set_is_reproducible(tmp_path):
    from synthseg_bids.generator import GeneratorSettings

    maps = [save_image(make_toy_label_map((20, 20, 20), seed=3), toy_affine(), tmp_path / "held_out.nii.gz")]
    settings = GeneratorSettings(output_shape=(16, 16, 16))
    first = make_validation_set(maps, tmp_path / "a", settings, n_images=2, seed=7)
    second = make_validation_set(maps, tmp_path / "b", settings, n_images=2, seed=7)
    assert [p.name for p, _ in first] == ["synth_000_image.nii.gz", "synth_001_image.nii.gz"]
    for (image_a, labels_a), (image_b, labels_b) in zip(first, second):
        assert np.array_equal(load_image(image_a).data, load_image(image_b).data)
        assert np.array_equal(load_label_map(labels_a).data, load_label_map(labels_b).data)
        values = set(np.unique(load_label_map(labels_a).data).tolist())
        assert values <= {0, 2, 3, 4, 16, 24, 41, 42, 43} and {2, 41} <= values
    assert not np.array_equal(load_image(first[0][0]).data, load_image(first[1][0]).data)
