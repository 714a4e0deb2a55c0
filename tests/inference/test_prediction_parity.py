"""The device-side prediction (flip averaging, smoothing, clean-up on compact masks, sums) against the
previous host pipeline, re-implemented here with scipy: ``gaussian_filter`` and per-channel clean-up of
the full posterior array."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synthseg_bids.core.io import Image
from synthseg_bids.core.volumes import voxel_volume
from synthseg_bids.inference import QC_GROUPS, InferenceSettings, Segmenter
from synthseg_bids.inference.prediction import gaussian_kernel
from synthseg_bids.inference.preprocess import extract_window, prepare_scan

from helpers import mni152, shipped_model
from inference_fakes import lopsided_network, phantom


def _largest(mask):
    labelled, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labelled.ravel())[1:]
    return labelled == np.argmax(sizes) + 1


def reference(first, flipped, table, settings):
    """The previous pipeline on the host: (final posteriors, unflipped argmax, flipped argmax)."""
    post = first.astype(np.float32)
    unflipped = flipped_index = None
    if flipped is not None:
        mirrored = flipped[::-1][..., table.flip_permutation]
        unflipped, flipped_index = post.argmax(-1), mirrored.argmax(-1)
        post = (post + mirrored) * np.float32(0.5)
    if settings.smoothing_sigma > 0:
        post = ndimage.gaussian_filter(post, (settings.smoothing_sigma,) * 3 + (0,), mode="nearest")
    if settings.postprocess != "none":
        groups = table.groups
        foreground = np.arange(len(table)) != 0
        keep = np.ones(post.shape, bool)
        keep[..., foreground] = _largest(post[..., foreground].sum(-1) > settings.posterior_threshold)[..., None]
        if settings.postprocess == "full":
            for g in np.unique(groups[(groups > 0) & foreground]):
                channels = (groups == g) & foreground
                kept = _largest(post[..., channels].max(-1) > settings.posterior_threshold)
                keep[..., channels] &= kept[..., None]
        post = post * keep
        total = post.sum(-1)
        empty = total <= 0
        post[empty, 0] = 1.0
        total[empty] = 1.0
        post /= total[..., None]
    return post, unflipped, flipped_index


def reference_qc(post, table, unflipped, flipped):
    lookup = {v: i + 1 for i, values in enumerate(QC_GROUPS.values()) for v in values}
    group_of = np.array([lookup.get(int(v), 0) for v in table.values])
    groups = group_of[post.argmax(-1)].ravel()
    n = len(QC_GROUPS) + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(groups, post.max(-1).ravel(), n) / np.bincount(groups, minlength=n)
    scores = {f"{name} confidence": confidence[i] for i, name in enumerate(QC_GROUPS, start=1)}
    if unflipped is not None:
        a, b = group_of[unflipped].ravel(), group_of[flipped].ravel()
        for i, name in enumerate(QC_GROUPS, start=1):
            with np.errstate(invalid="ignore"):
                scores[f"{name} flip dice"] = 2 * np.sum((a == i) & (b == i)) / (np.sum(a == i) + np.sum(b == i))
    return scores


def _compare(segmenter, image, *, max_label_mismatch, volume_rtol):
    s = segmenter.settings
    table = segmenter.label_table
    prepared = prepare_scan(image, segmenter.network.resolution_mm, segmenter.network.size_multiple, s)
    batch = prepared.network_input()
    first = segmenter.network_posteriors(batch)
    flipped = segmenter.network_posteriors(np.ascontiguousarray(batch[:, ::-1])) if s.flip else None
    post, unflipped, flipped_index = reference(first, flipped, table, s)
    del first, flipped
    result = segmenter.segment(image)

    # labels: 1 mm RAS scans, the window's labels copy onto the input grid
    expected = extract_window(table.values[post.argmax(-1)], -prepared.window_start, prepared.conformed.shape)
    mismatch = np.mean(result.labels_conformed.data != expected)
    brain = np.mean(expected != 0)
    assert mismatch <= max_label_mismatch * brain, (mismatch, brain)
    sums = post[prepared.inside_window()].sum(axis=(0, 1, 2), dtype=np.float64) * voxel_volume(prepared.window_affine)
    for name, k in zip(table.names, range(len(table))):
        if k == 0:
            continue
        assert result.volumes[name] == pytest.approx(sums[k], rel=volume_rtol, abs=1e-3), name
    assert result.volumes["total intracranial"] == pytest.approx(sums[1:].sum(), rel=volume_rtol)
    scores = reference_qc(post, table, unflipped, flipped_index)
    assert set(scores) == set(result.qc.scores)
    for key, value in scores.items():
        np.testing.assert_allclose(result.qc.scores[key], value, atol=1e-4, err_msg=key)
    return mismatch, result, post


def test_gaussian_kernel_is_scipys():
    impulse = np.zeros(21)
    impulse[10] = 1.0
    for sigma in (0.5, 1.0, 1.7):
        kernel = gaussian_kernel(sigma)
        expected = ndimage.gaussian_filter1d(impulse, sigma, truncate=4.0)
        np.testing.assert_allclose(np.pad(kernel, (10 - kernel.size // 2,)), expected, atol=1e-15)


@pytest.mark.parametrize("postprocess, flip, sigma", [("full", True, 0.5), ("brain", False, 1.0), ("none", True, 0.5)])
def test_device_path_equals_the_host_reference(postprocess, flip, sigma):
    """Left/right-lopsided fake network: flip averaging, smoothing and clean-up all change the result."""
    data, _ = phantom((40, 40, 40), texture=0.05, symmetric=True)
    data[2:5, 2:5, 30:33] = 0.6  # a far-away island: removed by the clean-up
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    settings = InferenceSettings(flip=flip, postprocess=postprocess, smoothing_sigma=sigma, min_size=8)
    segmenter = Segmenter(lopsided_network(), settings)
    mismatch, result, post = _compare(segmenter, Image(data, affine), max_label_mismatch=0.0, volume_rtol=1e-5)
    assert mismatch == 0
    if postprocess != "none":
        assert np.all(result.labels.data[2:5, 2:5, 30:33] == 0)


def test_device_path_with_posteriors_on_an_oblique_grid():
    """Interpolated labels (grids that do not align) and returned posteriors: the reference resampled by scipy."""
    from synthseg_bids.core.resample import resample_to_grid

    data, _ = phantom((40, 40, 40), texture=0.05, symmetric=True)
    angle = np.deg2rad(10)
    affine = np.eye(4)
    affine[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    affine[:3, :3] *= 1.3
    image = Image(data, affine)
    segmenter = Segmenter(lopsided_network(), InferenceSettings(min_size=8))
    s = segmenter.settings
    prepared = prepare_scan(image, 1.0, 8, s)
    batch = prepared.network_input()
    first = segmenter.network_posteriors(batch)
    flipped = segmenter.network_posteriors(np.ascontiguousarray(batch[:, ::-1]))
    post, _, _ = reference(first, flipped, segmenter.label_table, s)
    cval = np.zeros(post.shape[-1])
    cval[0] = 1.0
    expected = resample_to_grid(post, prepared.window_affine, image.shape, image.affine, order=1, cval=cval)
    result = segmenter.segment(image, posteriors=True)
    np.testing.assert_allclose(result.posteriors, expected, atol=2e-6)
    clear = np.diff(np.sort(expected, axis=-1)[..., -2:], axis=-1)[..., 0] > 1e-5
    np.testing.assert_array_equal(result.labels.data[clear], segmenter.label_table.values[expected.argmax(-1)][clear])
    without = segmenter.segment(image)  # labels interpolated at borders only: the same labels
    np.testing.assert_array_equal(without.labels.data, result.labels.data)


@pytest.mark.slow
def test_mni152_device_path_equals_the_host_reference():
    """The shipped model on the real MNI152 T1: labels equal but for <= 0.1 % of the brain, volumes within 0.1 %."""
    model = shipped_model()
    t1 = mni152()
    image = Image(np.asarray(t1.get_fdata(), np.float32), t1.affine)
    segmenter = Segmenter(model, InferenceSettings(device="cpu"))
    mismatch, result, _ = _compare(segmenter, image, max_label_mismatch=1e-3, volume_rtol=1e-3)
    print(f"MNI152: labels differ in {100 * mismatch:.5f} % of the voxels")
