"""Losses against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from keras import ops

from synthseg_bids.training.losses import (
    LOSSES,
    make_loss,
    soft_dice_loss,
    weighted_cross_entropy,
    weighted_l2_loss,
)

# One sample, two voxels, two labels: voxel 0 is background (label 0), voxel 1 is label 1.
TARGET = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32).reshape(1, 2, 1, 1, 2)
POSTERIORS = np.array([[0.8, 0.2], [0.4, 0.6]], np.float32).reshape(1, 2, 1, 1, 2)


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def test_dice_loss_matches_hand_computation():
    # label 0: 2*0.8 / (1 + 0.8^2 + 0.4^2) = 1.6/1.8 ; label 1: 2*0.6 / (1 + 0.2^2 + 0.6^2) = 1.2/1.4
    expected = 1 - (1.6 / 1.8 + 1.2 / 1.4) / 2
    np.testing.assert_allclose(_np(soft_dice_loss(TARGET, POSTERIORS)), [expected], rtol=1e-6)


def test_dice_loss_is_zero_for_a_perfect_prediction_and_per_sample():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(2, 5, 4, 3))
    labels[1][labels[1] == 3] = 2  # label 3 absent from the second sample: no loss for it
    onehot = np.eye(4, dtype=np.float32)[labels]
    np.testing.assert_allclose(_np(soft_dice_loss(onehot, onehot)), [0.0, 0.0], atol=1e-7)
    worse = onehot.copy()
    worse[0] = 0.25
    loss = _np(soft_dice_loss(onehot, worse))
    assert loss.shape == (2,) and loss[0] > 0.3 and loss[1] == pytest.approx(0.0, abs=1e-7)


def test_weighted_l2_matches_hand_computation():
    logits = np.array([[5.0, -5.0], [0.0, 1.0]], np.float32).reshape(1, 2, 1, 1, 2)
    # voxel 0 (background, weight 1e-8) is exactly on target; voxel 1: (0+5)^2 + (1-5)^2 = 41.
    expected = (1e-8 * 0 + (1 + 1e-8) * 41) / (2 * (1e-8 + 1 + 1e-8))
    np.testing.assert_allclose(_np(weighted_l2_loss(TARGET, logits)), [expected], rtol=1e-6)
    on_target = np.where(TARGET > 0, 5.0, -5.0).astype(np.float32)
    np.testing.assert_allclose(_np(weighted_l2_loss(TARGET, on_target)), [0.0], atol=1e-7)
    np.testing.assert_allclose(_np(weighted_l2_loss(TARGET, on_target * 0.4, target_value=2.0)), [0.0], atol=1e-7)


def test_cross_entropy_matches_hand_computation():
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    np.testing.assert_allclose(_np(weighted_cross_entropy(TARGET, POSTERIORS)), [expected], rtol=1e-6)
    weighted = -(1 * math.log(0.8) + 2 * math.log(0.6)) / 2
    np.testing.assert_allclose(_np(weighted_cross_entropy(TARGET, POSTERIORS, [1.0, 2.0])), [weighted], rtol=1e-6)
    combined = make_loss("dice+cross_entropy")(TARGET, POSTERIORS)
    np.testing.assert_allclose(_np(combined), [expected + 1 - (1.6 / 1.8 + 1.2 / 1.4) / 2], rtol=1e-6)


def test_losses_compute_in_float32_from_bfloat16():
    low = ops.cast(POSTERIORS, "bfloat16")
    value = soft_dice_loss(TARGET, low)
    assert str(ops.convert_to_numpy(value).dtype) == "float32"
    np.testing.assert_allclose(_np(value), _np(soft_dice_loss(TARGET, POSTERIORS)), atol=1e-2)


def test_make_loss_names():
    assert make_loss("dice") is soft_dice_loss
    for name in LOSSES:
        assert _np(make_loss(name)(TARGET, TARGET)).shape == (1,)
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("focal")
