"""Dice and surface distances against brute force, closed forms, medpy and DeepMind."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from synthseg_bids.core.io import load_label_map
from synthseg_bids.core.labels import default_label_table
from synthseg_bids.core.metrics import dice_scores, joint_histogram, label_indices, surface_distances


def random_label_maps(shape, n_labels, seed, shift=(0.8, -0.5, 0.3), sigma=1.5):
    """Two blob label maps 1..n_labels (0 background) differing by a sub-voxel shift."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((n_labels + 1, *shape)), (0, sigma, sigma, sigma))
    moved = ndimage.shift(field, (0, *shift), order=1, mode="nearest")
    return np.argmax(field, axis=0).astype(np.int32), np.argmax(moved, axis=0).astype(np.int32)


def brute_border(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside the mask or outside the volume."""
    border = np.zeros_like(mask)
    for index in zip(*np.nonzero(mask)):
        for axis, step in itertools.product(range(3), (-1, 1)):
            neighbour = list(index)
            neighbour[axis] += step
            if not 0 <= neighbour[axis] < mask.shape[axis] or not mask[tuple(neighbour)]:
                border[index] = True
    return border


def brute_distances(ref_mask, pred_mask, spacing):
    """Directed distances (mm) between border voxel centres, all pairs."""
    ref_points = np.argwhere(brute_border(ref_mask)) * spacing
    pred_points = np.argwhere(brute_border(pred_mask)) * spacing
    pairwise = np.sqrt(((pred_points[:, None, :] - ref_points[None, :, :]) ** 2).sum(-1))
    return pairwise.min(axis=1), pairwise.min(axis=0)


def test_dice_and_distances_match_brute_force_on_tiny_volumes():
    spacing = np.array([0.7, 1.0, 2.5])
    for seed in range(3):
        reference, prediction = random_label_maps((9, 8, 7), 3, seed, sigma=1.0)
        labels = [0, 1, 2, 3]
        dice = dice_scores(reference, prediction, labels)
        result = surface_distances(reference, prediction, labels, spacing, percentile=90)
        for i, label in enumerate(labels):
            ref, pred = reference == label, prediction == label
            assert dice[i] == pytest.approx(2 * np.sum(ref & pred) / (np.sum(ref) + np.sum(pred)), rel=1e-12)
            pred_to_ref, ref_to_pred = brute_distances(ref, pred, spacing)
            pooled = np.concatenate([pred_to_ref, ref_to_pred])
            assert result.hd[i] == pytest.approx(pooled.max(), rel=1e-12)
            assert result.hd_percentile[i] == pytest.approx(np.percentile(pooled, 90), rel=1e-12)
            assert result.msd[i] == pytest.approx(pooled.mean(), rel=1e-12)


def test_joint_histogram_matches_numpy_histogram2d():
    reference, prediction = random_label_maps((12, 10, 9), 5, seed=4)
    labels = [5, 1, 3]  # any order; 0, 2 and 4 go to the "other" bin
    histogram = joint_histogram(reference, prediction, labels)
    remap = lambda v: np.select([v == 5, v == 1, v == 3], [0, 1, 2], 3)  # noqa: E731
    expected, _, _ = np.histogram2d(remap(reference).ravel(), remap(prediction).ravel(), bins=[np.arange(5)] * 2)
    np.testing.assert_array_equal(histogram, expected)


@pytest.mark.parametrize(("axis", "k"), [(0, 1), (1, 3), (2, 2)])
def test_hausdorff_of_shifted_cube_is_shift_times_voxel_size(axis, k):
    spacing = np.array([0.7, 1.3, 2.2])
    reference = np.zeros((16, 17, 18), np.int32)
    reference[4:10, 5:11, 3:9] = 7
    prediction = np.roll(reference, k, axis=axis)
    result = surface_distances(reference, prediction, [7], spacing)
    assert result.hd[0] == pytest.approx(k * spacing[axis], rel=1e-12)
    # The faces perpendicular to the shift move by k voxels, so HD95 is at most HD and > 0.
    assert 0 < result.hd_percentile[0] <= result.hd[0]
    # Dice of two 6-voxel-long boxes overlapping over 6 - k voxels along the shift.
    assert dice_scores(reference, prediction, [7])[0] == pytest.approx((6 - k) / 6, rel=1e-12)


def test_identical_maps_have_dice_one_and_zero_distances():
    reference, _ = random_label_maps((14, 12, 10), 4, seed=1)
    result = surface_distances(reference, reference, [1, 2, 3, 4], spacing=(1.0, 0.5, 3.0))
    np.testing.assert_array_equal(dice_scores(reference, reference, [1, 2, 3, 4]), 1.0)
    np.testing.assert_array_equal(np.concatenate(result), 0.0)


def test_agrees_with_medpy_on_random_multilabel_volumes():
    binary = pytest.importorskip("medpy.metric.binary")
    spacing = (0.9, 1.2, 2.0)
    reference, prediction = random_label_maps((24, 24, 24), 6, seed=7)
    labels = np.arange(7)  # background too: it touches the volume edges
    dice = dice_scores(reference, prediction, labels)
    result = surface_distances(reference, prediction, labels, spacing)
    for i, label in enumerate(labels):
        ref, pred = reference == label, prediction == label
        assert dice[i] == pytest.approx(binary.dc(pred, ref), rel=1e-6)
        assert result.hd[i] == pytest.approx(binary.hd(pred, ref, spacing), rel=1e-6)
        assert result.hd_percentile[i] == pytest.approx(binary.hd95(pred, ref, spacing), rel=1e-6)
        assert result.msd[i] == pytest.approx(binary.assd(pred, ref, spacing), rel=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance")
@pytest.mark.parametrize("case", ["shifted", "nested"])
def test_hausdorff_agrees_with_deepmind_surface_distance_on_boxes(case):
    surface_distance = pytest.importorskip("surface_distance")
    spacing = (0.8, 1.5, 2.0)
    reference = np.zeros((14, 15, 16), bool)
    reference[3:11, 4:12, 3:12] = True
    if case == "shifted":
        prediction = np.roll(np.roll(reference, 2, axis=0), -1, axis=2)
    else:
        prediction = np.zeros_like(reference)
        prediction[5:9, 5:10, 6:9] = True
    distances = surface_distance.compute_surface_distances(reference, prediction, spacing)
    expected = surface_distance.compute_robust_hausdorff(distances, 100)
    result = surface_distances(reference.astype(np.int32), prediction.astype(np.int32), [1], spacing)
    assert result.hd[0] == pytest.approx(expected, rel=1e-6)


def test_missing_structures_give_nan_distances_and_documented_dice():
    reference = np.zeros((10, 10, 10), np.int32)
    prediction = np.zeros_like(reference)
    reference[2:5, 2:5, 2:5] = 1  # 1: in both
    prediction[3:6, 2:5, 2:5] = 1
    reference[6:9, 6:9, 6:9] = 2  # 2: reference only
    prediction[6:8, 1:3, 6:8] = 3  # 3: prediction only; 4: in neither
    labels = [1, 2, 3, 4]
    np.testing.assert_array_equal(dice_scores(reference, prediction, labels), [2 / 3, 0.0, 0.0, np.nan])
    result = surface_distances(reference, prediction, labels, spacing=(1, 1, 1))
    for values in result:
        assert np.isfinite(values[0])
        assert np.all(np.isnan(values[1:]))


def test_label_indices_handles_negative_and_huge_label_values():
    volume = np.array([[[-3, 0, 5], [10**9, 7, -3]]], dtype=np.int64)
    labels = [10**9, -3, 7]
    expected = np.array([[[2, 0, 0], [1, 3, 2]]])
    np.testing.assert_array_equal(label_indices(volume, labels), expected)  # sorted-search path
    small = np.where(volume == 10**9, 1000, volume)
    np.testing.assert_array_equal(label_indices(small, [1000, -3, 7]), expected)  # look-up table path


def test_bad_inputs_raise():
    volume = np.zeros((4, 4, 4), np.int32)
    with pytest.raises(ValueError, match="shape"):
        dice_scores(volume, np.zeros((4, 4, 5), np.int32), [1])
    with pytest.raises(ValueError, match="integer"):
        dice_scores(volume, volume.astype(np.float32), [1])
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(volume, volume, [1], spacing=(1, 0, 1))
    with pytest.raises(ValueError, match="3D"):
        surface_distances(volume[0], volume[0], [1], spacing=(1, 1))
    with pytest.raises(ValueError, match="duplicate"):
        dice_scores(volume, volume, [1, 1])


@pytest.fixture(scope="module")
def real_label_map(shared_data):
    return load_label_map(shared_data / "training_label_maps" / "training_seg_01.nii.gz").data


def test_real_label_map_against_itself_and_shifted_by_one_voxel(real_label_map):
    # All structures but the cerebral white matter and cortex, whose large boxes make the
    # test slow (the benchmark scores all 32 against medpy), on their bounding box + 2 voxels.
    labels = [v for v in default_label_table().values[1:] if v not in (2, 3, 41, 42)]
    box = ndimage.find_objects(np.isin(real_label_map, labels).astype(np.int8))[0]
    reference = real_label_map[tuple(slice(b.start - 2, b.stop + 2) for b in box)]
    np.testing.assert_array_equal(dice_scores(reference, reference, labels), 1.0)
    shifted = np.roll(reference, 1, axis=0)  # wraps a slice without any scored structure
    result = surface_distances(reference, shifted, labels, spacing=(1.0, 1.0, 1.0))
    # Every border voxel moves by 1 mm, and the extreme voxel along the shift has no
    # counterpart closer than 1 mm.
    np.testing.assert_allclose(result.hd, 1.0, rtol=1e-12)
    assert np.all((result.msd > 0) & (result.msd <= 1.0))


def test_real_label_map_crop_agrees_with_medpy(real_label_map):
    binary = pytest.importorskip("medpy.metric.binary")
    reference = real_label_map[104:152, 104:152, 104:152]
    # Erode every structure by one voxel (the voxels become background) and shift by 1.
    eroded = np.where(ndimage.grey_erosion(reference, size=3) == ndimage.grey_dilation(reference, size=3), reference, 0)
    prediction = np.roll(eroded, 1, axis=2)
    labels = [v for v in np.unique(reference) if v != 0 and np.any(prediction == v)]
    spacing = (1.0, 1.1, 0.9)
    result = surface_distances(reference, prediction, labels, spacing)
    for i, label in enumerate(labels):
        ref, pred = reference == label, prediction == label
        assert result.hd_percentile[i] == pytest.approx(binary.hd95(pred, ref, spacing), rel=1e-6)
        assert result.msd[i] == pytest.approx(binary.assd(pred, ref, spacing), rel=1e-6)
