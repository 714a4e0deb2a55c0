"""Largest connected components of stacked masks, against scipy per mask and planted cases.

The whole clean-up on posteriors is checked against a host reference in
tests/inference/test_prediction_parity.py."""

import numpy as np
from scipy import ndimage

from synthseg_bids.core.postprocess import largest_components


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
