"""Geometry: reorientation, conforming and resampling between grids."""

import numpy as np
import pytest
from scipy import ndimage

from synthseg_bids.core.resample import (
    axis_codes,
    conform,
    grid_mapping,
    reorient,
    resample_posteriors,
    resample_to_grid,
    window_affine,
)


def _world(affine, shape):
    """World coordinates (X, Y, Z, 3) of every voxel centre."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


@pytest.fixture
def oblique_affine():
    angle = np.deg2rad(10)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([1.2, 0.9, 2.5])
    aff[:3, 3] = [-10, 5, 3]
    return aff


@pytest.mark.parametrize("codes", ["LIA", "PSR", "RAS", "ASL"])
def test_reorient_keeps_world_positions(codes, oblique_affine):
    rng = np.random.default_rng(0)
    data = rng.random((5, 6, 7, 2))
    out, aff = reorient(data, oblique_affine, codes)
    assert axis_codes(aff) == codes
    # every voxel value sits at the same world position as before
    before = {tuple(np.round(p, 6)): v for p, v in zip(_world(oblique_affine, data.shape[:3]).reshape(-1, 3), data.reshape(-1, 2))}
    after = _world(aff, out.shape[:3]).reshape(-1, 3)
    for p, v in zip(after, out.reshape(-1, 2)):
        np.testing.assert_array_equal(before[tuple(np.round(p, 6))], v)
    back, back_aff = reorient(out, aff, axis_codes(oblique_affine))
    np.testing.assert_array_equal(back, data)
    np.testing.assert_allclose(back_aff, oblique_affine, atol=1e-12)


def test_conform_identity_at_target_resolution():
    data = np.random.default_rng(1).random((9, 8, 7)).astype(np.float32)
    aff = np.diag([1.0, 1.0, 1.02, 1.0])
    out, out_aff = conform(data, aff, 1.0, tolerance=0.05)
    np.testing.assert_array_equal(out, data)
    np.testing.assert_array_equal(out_aff, aff)


def test_conform_samples_a_smooth_function_at_the_new_world_positions(oblique_affine):
    shape = (24, 30, 12)
    world = _world(oblique_affine, shape)
    field = lambda p: np.sin(p[..., 0] / 9) + np.cos(p[..., 1] / 11) + p[..., 2] / 40  # noqa: E731
    data = field(world).astype(np.float32)
    out, aff = conform(data, oblique_affine, 1.0)
    np.testing.assert_allclose(np.sqrt((aff[:3, :3] ** 2).sum(0)), 1.0)
    # same axis directions, same field-of-view centre
    np.testing.assert_allclose(aff[:3, :3] / 1.0, oblique_affine[:3, :3] / np.sqrt((oblique_affine[:3, :3] ** 2).sum(0)))
    centre = lambda a, s: a[:3, :3] @ ((np.array(s) - 1) / 2) + a[:3, 3]  # noqa: E731
    np.testing.assert_allclose(centre(aff, out.shape), centre(oblique_affine, shape), atol=1e-9)
    assert out.shape == (29, 27, 30)
    expected = field(_world(aff, out.shape))
    inner = (slice(4, -4),) * 3  # away from the edges (extrapolated there)
    np.testing.assert_allclose(out[inner], expected[inner], atol=2e-3)
    assert out.min() >= data.min() and out.max() <= data.max()


def test_exact_copy_equals_interpolation():
    rng = np.random.default_rng(2)
    data = rng.random((6, 7, 8, 3)).astype(np.float32)
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    flipped, flipped_aff = reorient(data, aff, "PIL")
    target = window_affine(flipped_aff, (-2, 3, 1))
    fast = resample_to_grid(flipped, flipped_aff, (9, 5, 10), target, cval=[1, 0, 0])
    slow = np.stack(
        [
            ndimage.affine_transform(flipped[..., k], grid_mapping(flipped_aff, target), output_shape=(9, 5, 10),
                                     order=1, cval=[1, 0, 0][k])
            for k in range(3)
        ],
        -1,
    )
    np.testing.assert_allclose(fast, slow, atol=1e-6)


def test_round_trip_1mm_ras_is_identity():
    rng = np.random.default_rng(3)
    post = rng.random((10, 11, 12, 4)).astype(np.float32)
    post /= post.sum(-1, keepdims=True)
    aff = np.eye(4)
    aff[:3, 3] = [-5, -6, 7]
    start = np.array([-3, 2, 0])
    # the window starts 3 voxels before the grid and 2 after: paste back by resampling
    win = np.zeros((16, 8, 12, 4), np.float32)
    win[..., 0] = 1
    win[3:13, :, :, :] = post[:, 2:10]
    index, back = resample_posteriors(win, window_affine(aff, start), (10, 11, 12), aff, keep_posteriors=True)
    expected = post.copy()
    expected[:, :2] = expected[:, 10:] = 0
    expected[:, :2, :, 0] = expected[:, 10:, :, 0] = 1
    np.testing.assert_array_equal(back, expected)
    np.testing.assert_array_equal(index, expected.argmax(-1))


def test_resample_posteriors_running_argmax_matches_full():
    rng = np.random.default_rng(4)
    post = ndimage.gaussian_filter(rng.random((12, 12, 12, 5)), (1, 1, 1, 0)).astype(np.float32)
    post /= post.sum(-1, keepdims=True)
    src = np.diag([1.0, 1.0, 1.0, 1.0])
    dst = np.diag([0.7, 1.3, 2.0, 1.0])
    dst[:3, 3] = [0.3, -0.4, 0.5]
    fast, none = resample_posteriors(post, src, (15, 10, 7), dst)
    full_index, full = resample_posteriors(post, src, (15, 10, 7), dst, keep_posteriors=True)
    assert none is None
    np.testing.assert_array_equal(fast, full_index)
    # trilinear interpolation of probabilities keeps them summing to one (outside: background)
    np.testing.assert_allclose(full.sum(-1), 1.0, atol=1e-5)


def _reference_argmax(post, mapping, shape, cvals):
    """Brute force: every channel resampled on the whole target grid by scipy, then argmax."""
    stack = [ndimage.affine_transform(post[..., k], mapping, output_shape=shape, order=1, mode="constant",
                                      cval=float(cvals[k])) for k in range(post.shape[-1])]
    return np.argmax(np.stack(stack, -1), axis=-1), np.sort(np.stack(stack, -1), axis=-1)


@pytest.mark.parametrize("slab_voxels", [50, 1 << 21])
def test_argmax_without_full_resampling_equals_scipy_brute_force(slab_voxels, monkeypatch):
    """Posteriors like a network's (smoothed one-hot labels: wide uniform regions, soft borders) on
    an oblique, anisotropic target grid that extends past the source on every side."""
    from synthseg_bids.core import resample as module

    rng = np.random.default_rng(7)
    labels = ndimage.zoom(rng.integers(0, 6, (10, 12, 8)), 2, order=0)  # 20x24x16, small blocky regions
    post = ndimage.gaussian_filter(np.eye(6, dtype=np.float32)[labels], (0.5, 0.5, 0.5, 0)).astype(np.float32)
    post += 0.05 * rng.random(post.shape, dtype=np.float32)  # no exact ties between channels
    post /= post.sum(-1, keepdims=True)
    src = np.eye(4)
    angle = np.deg2rad(17)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    dst = np.eye(4)
    dst[:3, :3] = rot @ np.diag([0.4, 0.5, 0.9])
    dst[:3, 3] = [-4.0, -3.0, -2.5]
    shape = (66, 64, 26)
    cvals = np.array([1.0, 0, 0, 0, 0, 0])
    mapping = module.grid_mapping(src, dst)
    interpolated = []
    real = module._trilinear_argmax
    monkeypatch.setattr(module, "_trilinear_argmax",
                        lambda post, points, *args: (interpolated.append(points.shape[1]), real(post, points, *args))[1])
    index = module._resampled_argmax(post, mapping, shape, cvals, slab_voxels=slab_voxels)
    expected, ranked = _reference_argmax(post, mapping, shape, cvals)
    margin = ranked[..., -1] - ranked[..., -2]
    differ = index != expected
    assert np.all(margin[differ] < 1e-6), f"{differ.sum()} voxels differ beyond floating-point ties"
    assert differ.sum() <= 2
    assert (expected == 0).mean() > 0.2 and len(np.unique(expected)) == 6  # outside and every label present
    assert 0 < sum(interpolated) < 0.5 * np.prod(shape)  # uniform cells and outside points skip interpolation
    index_public, _ = resample_posteriors(post, src, shape, dst)
    np.testing.assert_array_equal(index_public, module._resampled_argmax(post, mapping, shape, cvals))


@pytest.mark.parametrize("corner", [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)])
def test_argmax_sees_a_cell_whose_single_corner_differs(corner):
    """7 corners of the cell say channel 0, one says channel 1: points near that corner are channel 1."""
    from synthseg_bids.core import resample as module

    post = np.zeros((3, 3, 3, 2), np.float32)
    post[..., 0] = 0.8
    post[..., 1] = 0.2
    post[corner + (0,)], post[corner + (1,)] = 0.1, 0.9
    near = 0.1 + 0.8 * np.array(corner)  # inside the first cell, close to `corner`
    target = np.eye(4)
    target[:3, :3] = 0.01 * np.eye(3)
    target[:3, 3] = near
    index = module._resampled_argmax(post, module.grid_mapping(np.eye(4), target), (2, 2, 2), np.array([1.0, 0.0]))
    expected, _ = _reference_argmax(post, module.grid_mapping(np.eye(4), target), (2, 2, 2), [1.0, 0.0])
    assert expected.min() == 1
    np.testing.assert_array_equal(index, expected)
