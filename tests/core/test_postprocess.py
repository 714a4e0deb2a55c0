"""Connected-component post-processing of posteriors."""

import numpy as np
from scipy import ndimage

from synthseg_bids.core.postprocess import keep_largest_components, largest_components, renormalise


def _one_hot(index, n):
    return np.eye(n, dtype=np.float32)[index]


def _by_hand_largest(mask):
    labelled, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labelled.ravel())[1:]
    return labelled == (np.argmax(sizes) + 1)


def test_largest_components_matches_scipy_per_mask():
    rng = np.random.default_rng(0)
    masks = ndimage.gaussian_filter(rng.random((4, 20, 20, 20)), (0, 1, 1, 1)) > 0.52
    masks[3] = False
    out = largest_components(masks)
    for g in range(4):
        np.testing.assert_array_equal(out[g], _by_hand_largest(masks[g]))
    assert out[:3].sum() > 0


def test_island_removed_main_component_kept():
    # channels: 0 background, 1-2 group 1 (e.g. left hippocampus / amygdala), 3 group 0 (CSF)
    groups = np.array([0, 1, 1, 0])
    index = np.zeros((30, 30, 30), int)
    index[5:15, 5:15, 5:15] = 1  # main body of group 1
    index[10:15, 10:15, 10:15] = 2
    index[24:27, 24:27, 24:27] = 2  # planted island of group 1, far away
    index[15:25, 5:15, 5:15] = 3  # CSF, touching the body (keeps the brain connected)
    index[1:3, 27:29, 1:3] = 3  # a CSF island outside the brain: removed by the brain step
    post = _one_hot(index, 4)
    out = keep_largest_components(post.copy(), groups)
    labels = out.argmax(-1)
    expected = index.copy()
    expected[24:27, 24:27, 24:27] = 0
    expected[1:3, 27:29, 1:3] = 0
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(out.sum(-1), 1.0)
    # independent check: the surviving group-1 voxels are scipy's largest component
    np.testing.assert_array_equal(np.isin(labels, [1, 2]), _by_hand_largest(np.isin(index, [1, 2])))


def test_brain_only_keeps_group_islands_inside_the_brain():
    groups = np.array([0, 1, 2])
    index = np.zeros((20, 20, 20), int)
    index[2:18, 2:18, 2:18] = 2
    index[4:8, 4:8, 4:8] = 1
    index[12:15, 12:15, 12:15] = 1  # second piece of group 1, inside the brain
    post = _one_hot(index, 3)
    kept = keep_largest_components(post.copy(), groups, brain_only=True).argmax(-1)
    np.testing.assert_array_equal(kept, index)
    full = keep_largest_components(post.copy(), groups).argmax(-1)
    assert np.all(full[12:15, 12:15, 12:15] == 0)  # removed: not connected to group 1's body


def test_renormalise_empty_voxels_become_background():
    post = np.array([[0.2, 0.2, 0.0], [0.0, 0.0, 0.0]], np.float32)
    out = renormalise(post)
    np.testing.assert_allclose(out, [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])


def test_largest_components_ties_and_given_extents():
    """Two equal components: the first in raster order is kept (as scipy numbers them); extents given or not."""
    masks = np.zeros((2, 12, 10, 8), bool)
    masks[0, 1:3, 1:3, 1:3] = True  # 8 voxels, found first
    masks[0, 8:10, 5:7, 4:6] = True  # 8 voxels
    masks[1, 6:9, 2:4, 2:3] = True  # 6 voxels
    masks[1, 0, 0, 0] = True
    out = largest_components(masks)
    expected = masks.copy()
    expected[0, 8:10, 5:7, 4:6] = False
    expected[1, 0, 0, 0] = False
    np.testing.assert_array_equal(out, expected)
    profiles = tuple(masks.any(axis=tuple(a for a in (1, 2, 3) if a != axis)) for axis in (1, 2, 3))
    np.testing.assert_array_equal(largest_components(masks, profiles=profiles), expected)
    assert not largest_components(np.zeros((1, 4, 4, 4), bool)).any()
