"""Inputs too large for one pass: :func:`~synthseg_bids.inference.windows.sliding_window_inference`,
checked against a brute-force average over the patches, computed here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from synthseg_bids.inference.windows import patch_starts, sliding_window_inference


def _tagging_predictor(calls: list):
    """Each call returns a constant field: its call number in channel 0, and the patch's first
    input voxel in channel 1 (which tells where the patch was cut)."""

    def predict(patch):
        calls.append(patch.shape)
        out = np.empty(patch.shape[:4] + (2,), np.float32)
        out[..., 0] = len(calls)
        out[..., 1] = patch[0, 0, 0, 0, 0]
        return out

    return predict


def _brute_force(inputs, edge, overlap, multiple):
    """The mean, per voxel, of the patches' outputs, patches enumerated from the rule in the docstring."""
    shape = inputs.shape[1:4]
    axes = []
    for length in shape:
        size = min(edge, length)
        n = 1 if size >= length else -(-(length - overlap) // (size - overlap))
        axes.append(sorted({int(round(s / multiple)) * multiple for s in np.linspace(0, length - size, n)}))
        axes[-1] = [(s, size) for s in axes[-1]]
    total = np.zeros(shape + (2,))
    count = np.zeros(shape)
    for k, patch in enumerate(itertools.product(*axes), start=1):
        box = tuple(slice(s, s + n) for s, n in patch)
        total[box + (0,)] += k
        total[box + (1,)] += inputs[(0,) + tuple(s for s, _ in patch) + (0,)]
        count[box] += 1
    assert count.min() >= 1  # every voxel covered
    return total / count[..., None]


@pytest.mark.parametrize("shape", [(40, 24, 32), (16, 48, 16), (72, 16, 24)])  # windows: multiples of 8
def test_patches_average_like_a_brute_force_mean_over_the_patches(shape):
    inputs = np.random.default_rng(1).random((1,) + shape + (1,), dtype=np.float32)
    calls = []
    out = sliding_window_inference(inputs, _tagging_predictor(calls), max_voxels=1000, window_size=14,
                                   overlap=4, size_multiple=8)
    expected = _brute_force(inputs, 16, 4, 8)  # 14 rounded up to the size multiple
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert all(max(c[1:4]) <= 16 for c in calls)
    assert out.dtype == np.float32 and out.shape == shape + (2,)


def test_small_inputs_run_whole():
    inputs = np.zeros((1, 10, 10, 10, 1), np.float32)
    calls = []
    out = sliding_window_inference(inputs, _tagging_predictor(calls), max_voxels=1000, window_size=8, overlap=2,
                                   size_multiple=8)
    assert calls == [inputs.shape] and out.shape == (10, 10, 10, 2)


def test_patch_starts_cover_the_axis_on_multiples():
    for length, edge, overlap, multiple in itertools.product([17, 40, 96, 130], [16, 32, 64], [0, 4, 8], [8, 16]):
        if edge % multiple or overlap >= edge:
            continue
        starts, size = patch_starts(length, edge, overlap, multiple)
        assert size == min(edge, length)
        assert all(s % multiple == 0 for s in starts) and list(starts) == sorted(set(starts))
        covered = np.zeros(length, int)
        for s in starts:
            covered[s : s + size] += 1
        if (length - size) % multiple == 0:
            assert covered.min() >= 1, (length, edge, overlap, multiple)
