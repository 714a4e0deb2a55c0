"""Losses against hand computations."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
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
ROOT = Path(__file__).resolve().parents[2]


def _background_crops():
    """Two samples of 16^3 voxels and 3 labels: the first all background, the second partly
    foreground; random logits (seed 0)."""
    rng = np.random.default_rng(0)
    labels = np.zeros((2, 16, 16, 16), np.int64)
    labels[1, 4:9, 2:12, 3:7] = rng.integers(1, 3, size=(5, 10, 4))
    target = np.eye(3, dtype=np.float32)[labels]
    logits = rng.normal(0.0, 3.0, size=target.shape).astype(np.float32)
    return target, logits


def _weighted_l2_reference(target, logits, t=5.0):
    """SynthSeg's weighted L2 per sample in float64: w = 1 - y0 + 1e-8."""
    y, z = target.astype(np.float64), logits.astype(np.float64)
    w = 1.0 - y[..., 0] + 1e-8
    squared = ((z - t * (2 * y - 1)) ** 2).sum(-1)
    return (w * squared).sum((1, 2, 3)) / (w.sum((1, 2, 3)) * y.shape[-1])


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


@pytest.mark.parametrize("compiled", ["eager", "graph", "xla"])
def test_weighted_l2_is_finite_on_an_all_background_crop_when_compiled(compiled):
    # Regression: written as 1 - y0 + 1e-8, the weights were folded by TensorFlow's graph
    # optimiser and XLA into (1 + 1e-8) - y0 == 1 - y0 (float32): all 0 on an
    # all-background crop, loss 0/0 = NaN in every compiled train step.
    if compiled != "eager" and keras.backend.backend() != "tensorflow":
        pytest.skip("tf.function compilation needs the TensorFlow backend")
    target, logits = _background_crops()
    loss = weighted_l2_loss
    if compiled != "eager":
        import tensorflow as tf

        loss = tf.function(weighted_l2_loss, jit_compile=compiled == "xla")
    expected = _weighted_l2_reference(target, logits)
    # all-background sample: equal weights, i.e. the unweighted mean squared error
    np.testing.assert_allclose(expected[0], ((logits[0] - 5 * (2 * target[0] - 1)) ** 2).mean(), rtol=1e-6)
    np.testing.assert_allclose(_np(loss(target, logits)), expected, rtol=1e-5)


_JAX_SCRIPT = """
import sys, jax, numpy as np
from synthseg_bids.training.losses import weighted_l2_loss
data = np.load(sys.argv[1])
np.save(sys.argv[2], np.asarray(jax.jit(weighted_l2_loss)(data["target"], data["logits"])))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_weighted_l2_is_finite_on_an_all_background_crop_under_jax_jit(tmp_path):
    target, logits = _background_crops()
    np.savez(tmp_path / "data.npz", target=target, logits=logits)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_JAX_SCRIPT), str(tmp_path / "data.npz"), str(tmp_path / "loss.npy")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "loss.npy"), _weighted_l2_reference(target, logits), rtol=1e-5)


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
