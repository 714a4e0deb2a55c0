"""Segmenter geometry with fake networks: orientation, resolution, flip, patches."""

import numpy as np
import pytest

from synthseg_bids.core.io import Image
from synthseg_bids.core.resample import reorient
from synthseg_bids.inference import InferenceSettings, Segmenter

from inference_fakes import constant_network, lopsided_network, phantom, voxel_network

EXACT = dict(min_size=8, smoothing_sigma=0.0)


def _ras_image(shape=(40, 40, 40), texture=0.0, voxel=1.0, symmetric=False):
    image, truth = phantom(shape, texture=texture, symmetric=symmetric)
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = [-20.0, -18.0, -22.0]
    return Image(image, affine), truth


def _dice(a, b, values):
    return [2 * np.sum((a == v) & (b == v)) / (np.sum(a == v) + np.sum(b == v)) for v in values]


def test_labels_match_phantom_and_affine_is_the_input_one():
    image, truth = _ras_image()
    result = Segmenter(voxel_network(), InferenceSettings(flip=False, **EXACT)).segment(image, posteriors=True)
    np.testing.assert_array_equal(result.labels.affine, image.affine)
    assert result.labels.data.dtype == np.int32
    np.testing.assert_array_equal(result.labels.data, truth)
    # 1 mm RAS input: the conformed labels are the input-grid labels (round trip identity)
    np.testing.assert_array_equal(result.labels_conformed.data, truth)
    np.testing.assert_array_equal(result.labels_conformed.affine, image.affine)
    assert result.posteriors.shape == truth.shape + (33,)
    np.testing.assert_allclose(result.posteriors.sum(-1), 1.0, atol=1e-5)
    assert set(result.timings) == {"load", "preprocess", "network", "postprocess", "total"}


@pytest.mark.parametrize("codes", ["LIA", "SPL"])
def test_orientation_invariance(codes):
    image, _ = _ras_image(texture=0.05, symmetric=True)
    segmenter = Segmenter(lopsided_network(), InferenceSettings(flip=True, min_size=8))
    reference = segmenter.segment(image).labels.data
    data, affine = reorient(image.data, image.affine, codes)
    stored = Image(np.ascontiguousarray(data), affine)
    result = segmenter.segment(stored)
    np.testing.assert_array_equal(result.labels.affine, affine)
    back, _ = reorient(result.labels.data, result.labels.affine, "RAS")
    np.testing.assert_array_equal(back, reference)
    assert len(np.unique(reference)) > 5


def test_flip_augmentation_is_left_right_symmetric():
    image, _ = _ras_image(texture=0.05, symmetric=True)
    mirrored = Image(np.ascontiguousarray(image.data[::-1]), image.affine)
    table = voxel_network().label_table

    def swapped_flip(labels):
        return table.values[table.flip_permutation][table.index_of(labels)][::-1]

    with_flip = Segmenter(lopsided_network(), InferenceSettings(flip=True, **EXACT))
    a = with_flip.segment(image, posteriors=True)
    b = with_flip.segment(mirrored, posteriors=True)
    assert np.count_nonzero(np.isin(a.labels.data, [2, 3])) > 1000
    assert np.count_nonzero(np.isin(a.labels.data, [41, 42])) > 1000
    np.testing.assert_allclose(b.posteriors, a.posteriors[::-1][..., table.flip_permutation], atol=1e-6)
    # labels too, except where two channels tie (argmax picks the lower channel on both sides)
    top2 = np.sort(a.posteriors, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 1e-5
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(b.labels.data[clear[::-1]], swapped_flip(a.labels.data)[clear[::-1]])
    # the network alone is lopsided: without flip augmentation the symmetry fails
    without = Segmenter(lopsided_network(), InferenceSettings(flip=False, **EXACT))
    a0, b0 = without.segment(image).labels.data, without.segment(mirrored).labels.data
    assert np.mean(b0 != swapped_flip(a0)) > 0.01


def test_anisotropic_input_returns_labels_on_its_grid():
    fine, truth = _ras_image((60, 60, 60))
    thick = fine.data.reshape(60, 60, 12, 5).mean(-1)  # 1 x 1 x 5 mm slices
    affine = fine.affine.copy()
    affine[2, 2] = 5.0
    affine[2, 3] += 2.0  # centre of each 5 mm slab
    result = Segmenter(voxel_network(), InferenceSettings(flip=False, min_size=8)).segment(Image(thick, affine))
    assert result.labels.shape == (60, 60, 12)
    np.testing.assert_array_equal(result.labels.affine, affine)
    assert result.labels_conformed.shape == (60, 60, 60)
    expected = truth[:, :, 2::5]
    # thin cortex loses most to 5 mm partial voluming; a one-slab shift would score far lower
    assert min(_dice(result.labels.data, expected, [2, 41])) > 0.8
    assert min(_dice(result.labels.data, expected, [3, 42])) > 0.6
    shifted = np.roll(expected, 1, axis=2)
    assert min(_dice(result.labels.data, shifted, [2, 41])) < 0.8


def test_patches_equal_whole_volume():
    image, _ = _ras_image(texture=0.05)
    calls = []
    whole = Segmenter(voxel_network(), InferenceSettings(flip=False, min_size=8)).segment(image, posteriors=True)
    patched = Segmenter(
        voxel_network(calls=calls),
        InferenceSettings(flip=False, min_size=8, max_voxels=16**3, patch_size=16, patch_overlap=8),
    ).segment(image, posteriors=True)
    assert len(calls) > 8 and all(shape[1:4] == (16, 16, 16) for shape in calls)
    np.testing.assert_allclose(patched.posteriors, whole.posteriors, atol=1e-6)
    np.testing.assert_array_equal(patched.labels.data, whole.labels.data)


def test_volumes_and_qc():
    image, truth = _ras_image()
    result = Segmenter(voxel_network(), InferenceSettings(flip=False, **EXACT)).segment(image)
    assert result.volumes["Left-Cerebral-White-Matter"] == pytest.approx(np.sum(truth == 2), rel=0.01)
    assert result.volumes["total intracranial"] == pytest.approx(np.sum(truth > 0), rel=0.01)
    qc = result.qc
    assert qc.scores["general white matter confidence"] > 0.9
    assert np.isnan(qc.scores["hippocampus+amygdala confidence"])
    assert not any("flip dice" in k for k in qc.scores)
    # a network that is unsure everywhere is flagged
    unsure = voxel_network(width=1.0)
    flagged = Segmenter(unsure, InferenceSettings(flip=False, postprocess="none", **EXACT)).segment(image).qc
    assert flagged.flag and "general white matter confidence" in flagged.flagged


def test_crop_limits_the_analysed_region():
    image, truth = _ras_image()
    result = Segmenter(voxel_network(), InferenceSettings(flip=False, crop=(16, 16, 16), **EXACT)).segment(image)
    inside = np.zeros(truth.shape, bool)
    inside[12:28, 12:28, 12:28] = True
    np.testing.assert_array_equal(result.labels.data[~inside], 0)
    np.testing.assert_array_equal(result.labels.data[inside], truth[inside])


def test_crop_is_the_exact_window_and_volumes_exclude_padding():
    """A crop smaller than ``min_size`` is honoured; padding adds no volume."""
    from synthseg_bids.inference.preprocess import head_window

    data = np.zeros((40, 40, 40), np.float32)
    data[10:30, 12:28, 8:32] = 1.0
    start, shape = head_window(data, 8, min_size=128, crop=(16, 16, 24))
    assert shape == (16, 16, 24)
    start, shape = head_window(data, 8, min_size=64)
    assert shape == (64, 64, 64)

    # A window narrower than the 40^3 phantom along x and z (voxels 12:28, as in
    # test_crop_limits_the_analysed_region) and wider along y (4 voxels of padding each side).
    image, truth = _ras_image()
    settings = InferenceSettings(flip=False, crop=(16, 48, 16), min_size=8, smoothing_sigma=0.0, postprocess="none")
    inside = truth[12:28, :, 12:28]
    volumes = Segmenter(constant_network(24), settings).segment(image).volumes
    assert volumes["CSF"] == inside.size == 16 * 40 * 16  # the scan's voxels in the window, not 16 x 48 x 16
    # per structure: the phantom's voxel counts inside the window (an independent count of the truth)
    volumes = Segmenter(voxel_network(), settings).segment(image).volumes
    for value, name in ((2, "Left-Cerebral-White-Matter"), (41, "Right-Cerebral-White-Matter"),
                        (3, "Left-Cerebral-Cortex"), (42, "Right-Cerebral-Cortex"), (16, "Brain-Stem")):
        assert np.sum(inside == value) > 0
        assert volumes[name] == pytest.approx(np.sum(inside == value), rel=0.01), name
    assert np.sum(inside == 2) < 0.9 * np.sum(truth == 2)  # the crop does leave white matter out


def test_volumes_exclude_the_padding_around_a_small_scan():
    """A network that calls every voxel CSF, padding included: the total is the scan's volume."""
    network = constant_network(24)
    data = np.random.default_rng(0).random((20, 22, 18)).astype(np.float32) + 1.0
    scan = Image(data, np.diag([1.0, 1.0, 1.0, 1.0]))
    settings = InferenceSettings(device="cpu", min_size=48, flip=False, postprocess="none", smoothing_sigma=0)
    result = Segmenter(network, settings).segment(scan)
    assert result.volumes["CSF"] == 20 * 22 * 18  # not 48**3, the padded window
