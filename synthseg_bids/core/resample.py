"""Voxel-grid geometry: reorientation, conforming to a resolution, resampling between grids.

Every function takes arrays and affines (voxel -> world, RAS+ mm) and returns arrays and
affines; nothing is reoriented unless asked. Conventions:

- a *grid* is a ``(shape, affine)`` pair; world coordinates are those of the affine;
- arrays may carry trailing non-spatial axes (e.g. ``(X, Y, Z, K)`` posteriors): only the
  first three axes are spatial;
- :func:`reorient` is exact (axis permutations and flips, no interpolation);
- :func:`conform` resamples to an (isotropic) voxel size with a cubic spline and keeps the
  axes' directions (an oblique scan stays oblique: the grid is not rotated);
- :func:`resample_to_grid` and :func:`resample_posteriors` map data from one grid onto
  another; when the two grids differ only by axis permutations, flips and whole-voxel
  shifts they copy voxels exactly instead of interpolating.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from nibabel import orientations
from scipy import ndimage

from .io import voxel_sizes

__all__ = [
    "axis_codes",
    "conform",
    "copy_to_grid",
    "grid_mapping",
    "grids_align",
    "reorient",
    "resample_posteriors",
    "resample_to_grid",
    "window_affine",
]


def axis_codes(affine: np.ndarray) -> str:
    """Orientation codes of the voxel axes, e.g. ``'RAS'`` or ``'LIA'``.

    Each letter is the world direction towards which the voxel index along that axis
    increases (nearest of R/L, A/P, S/I for oblique axes).
    """
    return "".join(orientations.aff2axcodes(np.asarray(affine, dtype=float)))


def reorient(data: np.ndarray, affine: np.ndarray, codes: str = "RAS") -> tuple[np.ndarray, np.ndarray]:
    """Permute and flip voxel axes so that they point along ``codes`` (exact, no interpolation).

    Parameters
    ----------
    data : ndarray, shape (X, Y, Z, ...)
        Voxel data; trailing axes beyond the third are carried along unchanged.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine of ``data`` (mm).
    codes : str
        Target orientation, three letters (default 'RAS': axis 0 runs left -> right,
        axis 1 posterior -> anterior, axis 2 inferior -> superior).

    Returns
    -------
    data : ndarray
        A view of the input when possible (copy it before writing to it).
    affine : ndarray, shape (4, 4)
        Affine of the reoriented array; every voxel keeps its world position.
    """
    affine = np.asarray(affine, dtype=np.float64)
    current = orientations.io_orientation(affine)
    target = orientations.axcodes2ornt(tuple(codes))
    transform = orientations.ornt_transform(current, target)
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return data, affine.copy()
    new_data = orientations.apply_orientation(data, transform)
    new_affine = affine @ orientations.inv_ornt_aff(transform, data.shape[:3])
    return new_data, new_affine


def conform(
    data: np.ndarray,
    affine: np.ndarray,
    voxel_size: float = 1.0,
    *,
    tolerance: float = 0.05,
    order: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a 3D image to ``voxel_size`` mm along each axis (same field of view).

    The new grid keeps the direction of each voxel axis and the centre of the field of
    view; the number of voxels along an axis is ``round(n * size / voxel_size)``. Axes
    whose voxel size is already within ``tolerance`` mm of ``voxel_size`` are not
    resampled (their voxel size is kept), so an image already at the target resolution is
    returned unchanged.

    Parameters
    ----------
    data : ndarray, shape (X, Y, Z)
        Image intensities.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine (mm).
    voxel_size : float
        Target voxel size in mm.
    tolerance : float
        Voxel sizes within this many mm of ``voxel_size`` are kept as they are.
    order : int
        Spline order of :func:`scipy.ndimage.affine_transform` (3: cubic). Values beyond
        the input's intensity range (spline overshoot) are clipped to that range.

    Returns
    -------
    data : ndarray, float32, shape (X', Y', Z')
    affine : ndarray, shape (4, 4)
    """
    if data.ndim != 3:
        raise ValueError(f"conform expects a 3D array, got shape {data.shape}")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
    affine = np.asarray(affine, dtype=np.float64)
    zooms = voxel_sizes(affine)
    keep = np.abs(zooms - voxel_size) <= tolerance
    if np.all(keep):
        return np.asarray(data, dtype=np.float32), affine.copy()
    shape = np.array(data.shape)
    step = np.where(keep, 1.0, voxel_size / zooms)  # new voxel step in old voxel units
    new_shape = np.where(keep, shape, np.maximum(1, np.rint(shape / step))).astype(int)
    offset = (shape - 1) / 2 - (new_shape - 1) / 2 * step  # centres of the fields of view coincide
    new_to_old = np.eye(4)
    new_to_old[:3, :3] = np.diag(step)
    new_to_old[:3, 3] = offset
    source = np.asarray(data, dtype=np.float32)
    out = ndimage.affine_transform(
        source, step, offset=offset, output_shape=tuple(new_shape), order=order, mode="nearest", output=np.float32
    )
    if order > 1:
        np.clip(out, source.min(), source.max(), out=out)
    return out, affine @ new_to_old


def window_affine(affine: np.ndarray, start: Sequence[int]) -> np.ndarray:
    """Affine of the sub-array starting at voxel ``start`` (may be negative: padding)."""
    shift = np.eye(4)
    shift[:3, 3] = np.asarray(start, dtype=float)
    return np.asarray(affine, dtype=np.float64) @ shift


def grid_mapping(source_affine: np.ndarray, target_affine: np.ndarray) -> np.ndarray:
    """Matrix mapping target voxel indices to source voxel indices (4x4, homogeneous)."""
    return np.linalg.solve(np.asarray(source_affine, dtype=np.float64), np.asarray(target_affine, dtype=np.float64))


def resample_to_grid(
    data: np.ndarray,
    affine: np.ndarray,
    shape: Sequence[int],
    target_affine: np.ndarray,
    *,
    order: int = 1,
    cval: float | Sequence[float] = 0.0,
) -> np.ndarray:
    """Resample ``data`` onto the grid ``(shape, target_affine)``.

    Parameters
    ----------
    data : ndarray, shape (X, Y, Z) or (X, Y, Z, K)
        Source data; each of the K channels is resampled with the same coordinates.
    affine : ndarray, shape (4, 4)
        Source voxel-to-world affine.
    shape : sequence of 3 int
        Target spatial shape.
    target_affine : ndarray, shape (4, 4)
        Target voxel-to-world affine.
    order : int
        Spline order (0 nearest, 1 trilinear, 3 cubic).
    cval : float or sequence of K floats
        Value given to target voxels outside the source grid (one per channel allowed).

    Returns
    -------
    ndarray, shape ``(*shape, K)`` or ``shape``, float32 (``data``'s dtype for exact copies)
    """
    shape = tuple(int(s) for s in shape)
    channels = data.shape[3:]
    cvals = np.broadcast_to(np.asarray(cval, dtype=float), (int(np.prod(channels)),))
    mapping = grid_mapping(affine, target_affine)
    exact = _exact_mapping(mapping)
    if exact is not None:
        return _copy_exact(data, shape, exact, cvals)
    out = np.empty(shape + channels, dtype=np.float32)
    flat_in = data.reshape(data.shape[:3] + (-1,))
    flat_out = out.reshape(shape + (-1,))
    for k in range(flat_in.shape[3]):
        ndimage.affine_transform(
            np.asarray(flat_in[..., k], dtype=np.float32),
            mapping,
            output_shape=shape,
            output=flat_out[..., k],
            order=order,
            mode="constant",
            cval=float(cvals[k]),
        )
    return out


def grids_align(affine: np.ndarray, target_affine: np.ndarray) -> bool:
    """Whether data moves from one grid to the other by voxel copies (:func:`copy_to_grid`)."""
    return _exact_mapping(grid_mapping(affine, target_affine)) is not None


def copy_to_grid(
    data: np.ndarray, affine: np.ndarray, shape: Sequence[int], target_affine: np.ndarray, *, fill: float = 0
) -> np.ndarray | None:
    """``data`` on the grid ``(shape, target_affine)`` by voxel copies, or ``None`` when that needs interpolation.

    Copies are possible when the two grids differ only by axis permutations, flips and
    whole-voxel shifts; target voxels outside ``data`` get ``fill``. Keeps ``data``'s dtype.
    """
    exact = _exact_mapping(grid_mapping(affine, target_affine))
    if exact is None:
        return None
    return _copy_exact(data, tuple(int(s) for s in shape), exact, np.array([fill]))


def resample_posteriors(
    posteriors: np.ndarray,
    affine: np.ndarray,
    shape: Sequence[int],
    target_affine: np.ndarray,
    *,
    keep_posteriors: bool = False,
    background: int = 0,
    index: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample posteriors trilinearly onto another grid, then take the argmax there.

    Target voxels outside the source grid are background (posterior 1 in channel
    ``background``). Without ``keep_posteriors`` the result is the same argmax, computed
    without resampling every channel everywhere (see :func:`_resampled_argmax`): memory
    is one target-sized label array plus bounded slabs, whatever the number of channels.

    Parameters
    ----------
    posteriors : ndarray, shape (X, Y, Z, K)
        Class probabilities on the source grid.
    affine : ndarray, shape (4, 4)
        Source affine.
    shape, target_affine
        Target grid.
    keep_posteriors : bool
        Also return the resampled posteriors, float32 ``(*shape, K)``.
    background : int
        Channel of the background class.
    index : ndarray of int, shape (X, Y, Z), optional
        ``argmax`` of ``posteriors`` over channels, when already known (it is computed
        otherwise; unused with ``keep_posteriors``).

    Returns
    -------
    index : ndarray, int32, shape ``shape``
        Channel of the largest resampled posterior at each target voxel (ties: lowest).
    posteriors : ndarray or None
    """
    shape = tuple(int(s) for s in shape)
    n_channels = posteriors.shape[3]
    cvals = np.zeros(n_channels)
    cvals[background] = 1.0
    if keep_posteriors:
        resampled = resample_to_grid(posteriors, affine, shape, target_affine, order=1, cval=cvals)
        return np.argmax(resampled, axis=-1).astype(np.int32), resampled.astype(np.float32, copy=False)
    mapping = grid_mapping(affine, target_affine)
    exact = _exact_mapping(mapping)
    if index is None:
        index = np.argmax(posteriors, axis=-1)
    index = index.astype(np.int32, copy=False)
    if exact is not None:
        return _copy_exact(index, shape, exact, np.array([background])), None
    return _resampled_argmax(posteriors, mapping, shape, cvals, source_index=index), None


def _resampled_argmax(
    posteriors: np.ndarray,
    mapping: np.ndarray,
    shape: tuple[int, ...],
    cvals: np.ndarray,
    slab_voxels: int = 1 << 21,
    source_index: np.ndarray | None = None,
) -> np.ndarray:
    """Argmax over channels of the trilinearly resampled posteriors, without resampling them all.

    Trilinear interpolation is a convex combination of the 8 corners of the source cell
    that holds the target point, with the same weights for every channel. Where those 8
    corners share their argmax ``k`` (``p_k >= p_j`` at each, strictly for ``j < k``), the
    interpolated ``p_k`` is therefore the largest too, with the same tie-break as ``argmax``:
    the label is ``k`` with no interpolation at all. Only target points in cells whose
    corners disagree (label borders) are interpolated, every channel at once, by gathering
    the 8 corners' posterior vectors. As with :func:`scipy.ndimage.affine_transform`
    (``order=1, mode="constant"``), points outside the source grid's extent take ``cvals``,
    i.e. the channel whose ``cval`` is largest (background). Target voxels are processed
    in slabs of about ``slab_voxels``. ``source_index``: the argmax of ``posteriors``, when known.
    """
    source_shape = np.array(posteriors.shape[:3])
    if source_index is None:
        source_index = np.argmax(posteriors, axis=-1).astype(np.int32)
    corner = source_index[:-1, :-1, :-1]
    uniform = np.ones(corner.shape, dtype=bool)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                if dx or dy or dz:
                    shifted = source_index[dx:, dy:, dz:][: corner.shape[0], : corner.shape[1], : corner.shape[2]]
                    uniform &= shifted == corner
    outside_label = int(np.argmax(cvals))
    last = source_shape[:, None] - 1
    out = np.empty(shape, dtype=np.int32)
    rows = max(1, slab_voxels // max(1, shape[1] * shape[2]))
    jj, kk = np.meshgrid(np.arange(shape[1], dtype=np.float64), np.arange(shape[2], dtype=np.float64), indexing="ij")
    linear, offset = mapping[:3, :3], mapping[:3, 3]
    in_plane = linear[:, 1, None, None] * jj + linear[:, 2, None, None] * kk + offset[:, None, None]
    for start in range(0, shape[0], rows):
        ii = np.arange(start, min(start + rows, shape[0]), dtype=np.float64)
        coords = (linear[:, 0, None, None, None] * ii[None, :, None, None] + in_plane[:, None]).reshape(3, -1)
        labels = np.full(coords.shape[1], outside_label, dtype=np.int32)
        inside = np.all((coords >= 0) & (coords <= last), axis=0)
        points = coords[:, inside]
        base = np.minimum(np.floor(points).astype(np.intp), np.maximum(last - 1, 0))
        in_cell = np.all(base < last, axis=0)  # the cell base..base+1 exists (not a 1-voxel axis)
        settled = np.zeros(points.shape[1], dtype=bool)
        settled[in_cell] = uniform[base[0, in_cell], base[1, in_cell], base[2, in_cell]]
        values = np.empty(points.shape[1], dtype=np.int32)
        values[settled] = corner[base[0, settled], base[1, settled], base[2, settled]]
        todo = ~settled
        values[todo] = _trilinear_argmax(posteriors, points[:, todo], base[:, todo], last)
        labels[inside] = values
        out[start:start + len(ii)] = labels.reshape(len(ii), shape[1], shape[2])
    return out


def _trilinear_argmax(posteriors: np.ndarray, points: np.ndarray, base: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Argmax of the posteriors interpolated at ``points`` (3, N), inside the grid, cell corners ``base``."""
    frac = (points - base).astype(np.float32)
    upper = np.minimum(base + 1, last)
    total = np.zeros((points.shape[1], posteriors.shape[3]), dtype=np.float32)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                weight = ((frac[0] if dx else 1 - frac[0]) * (frac[1] if dy else 1 - frac[1])
                          * (frac[2] if dz else 1 - frac[2]))
                index = tuple((upper if d else base)[axis] for axis, d in enumerate((dx, dy, dz)))
                total += weight[:, None] * posteriors[index]
    return np.argmax(total, axis=1).astype(np.int32)


def _exact_mapping(mapping: np.ndarray, atol: float = 1e-4) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(source axis of each target axis, sign, offset)`` when ``mapping`` only permutes,
    flips and shifts voxel axes by whole voxels; ``None`` otherwise."""
    linear = mapping[:3, :3]
    rounded = np.rint(linear)
    offset = mapping[:3, 3]
    if not (np.allclose(linear, rounded, atol=atol) and np.allclose(offset, np.rint(offset), atol=atol)):
        return None
    if not (np.all(np.abs(rounded).sum(axis=0) == 1) and np.all(np.abs(rounded).sum(axis=1) == 1)):
        return None
    source_axis = np.argmax(np.abs(rounded), axis=0)  # target axis j reads source axis source_axis[j]
    sign = rounded[source_axis, np.arange(3)].astype(int)
    return source_axis, sign, np.rint(offset).astype(int)


def _copy_exact(
    data: np.ndarray, shape: tuple[int, ...], exact: tuple[np.ndarray, np.ndarray, np.ndarray], cvals: np.ndarray
) -> np.ndarray:
    """Target array by voxel copies (see :func:`_exact_mapping`); uncovered voxels get ``cvals``."""
    source_axis, sign, offset = exact
    channels = data.shape[3:]
    out = np.empty(shape + channels, dtype=data.dtype)
    out[...] = cvals.reshape(channels) if channels else cvals[0]
    # source index along source_axis[j] = sign[j] * target index j + offset[source_axis[j]]
    moved = np.transpose(data, tuple(source_axis) + tuple(range(3, data.ndim)))
    target_slices, source_slices = [], []
    for j in range(3):
        length = data.shape[source_axis[j]]
        t0 = offset[source_axis[j]]
        if sign[j] > 0:  # source = t + t0
            lo, hi = max(0, -t0), min(shape[j], length - t0)
            target_slices.append(slice(lo, max(lo, hi)))
            source_slices.append(slice(lo + t0, max(lo, hi) + t0))
        else:  # source = t0 - t
            lo, hi = max(0, t0 - length + 1), min(shape[j], t0 + 1)
            if hi <= lo:
                target_slices.append(slice(0, 0))
                source_slices.append(slice(0, 0))
                continue
            target_slices.append(slice(lo, hi))
            stop = t0 - hi
            source_slices.append(slice(t0 - lo, stop if stop >= 0 else None, -1))
    out[tuple(target_slices)] = moved[tuple(source_slices)]
    return out
