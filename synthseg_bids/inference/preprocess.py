"""Preparing a scan for the network: RAS, model resolution, intensities in [0, 1], head window.

:func:`prepare_scan` chains the steps and records the geometry needed to bring the
prediction back onto the input grid:

1. optional intensity clipping (CT);
2. reorientation to RAS (exact voxel permutation, :func:`~synthseg_bids.core.resample.reorient`);
3. resampling to the model's resolution with a cubic spline
   (:func:`~synthseg_bids.core.resample.conform`; skipped within the tolerance);
4. robust normalisation: clip to the given percentiles and map to [0, 1];
5. the *window*: a box on the conformed grid, each edge a multiple of the network's
   size multiple, centred on the head's bounding box (voxels above a normalised
   threshold) and covering it, or of a fixed ``crop`` size; parts outside the scan are
   zero-padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.io import Image, ImageError
from ..core.resample import conform, reorient, window_affine
from .settings import InferenceSettings

__all__ = ["PreparedScan", "ScanGrids", "extract_window", "head_window", "normalise_intensities", "prepare_scan"]


@dataclass(frozen=True)
class ScanGrids:
    """The grids a prediction goes back to, without any voxel data.

    What the steps after the network need of a :class:`PreparedScan`, so that a scan
    waiting for (or in) the network holds its network input and no other copy of the
    scan (the input and conformed volumes are each as large as the window, or larger).

    Attributes
    ----------
    input_shape : tuple of 3 int
        The scan's own grid (as given).
    input_affine : ndarray, shape (4, 4)
    input_header : nibabel header or None
        The scan's header (kept for saving on the input grid).
    input_path : Path or None
    conformed_shape : tuple of 3 int
        The RAS, model-resolution grid.
    conformed_affine : ndarray, shape (4, 4)
    window_start : ndarray of int, shape (3,)
        First voxel of the window on the conformed grid (negative: padding).
    window_shape : tuple of 3 int
        Window size (multiples of the network's size multiple).
    """

    input_shape: tuple[int, int, int]
    input_affine: np.ndarray
    input_header: object
    input_path: object
    conformed_shape: tuple[int, int, int]
    conformed_affine: np.ndarray
    window_start: np.ndarray
    window_shape: tuple[int, int, int]

    @property
    def window_affine(self) -> np.ndarray:
        """Voxel-to-world affine of the window."""
        return window_affine(self.conformed_affine, self.window_start)

    def inside_window(self) -> tuple[slice, slice, slice]:
        """The part of the window that lies inside the conformed scan (not padding)."""
        stop = self.window_start + np.asarray(self.window_shape)
        return tuple(
            slice(max(0, -a), min(b, n) - a) for a, b, n in zip(self.window_start, stop, self.conformed_shape)
        )


@dataclass
class PreparedScan:
    """A scan ready for the network, with the geometry of every step.

    Attributes
    ----------
    image : Image
        The input scan as given (input grid).
    conformed : ndarray, float32, shape (X, Y, Z)
        Normalised intensities on the conformed (RAS, model-resolution) grid.
    conformed_affine : ndarray, shape (4, 4)
    window_start : ndarray of int, shape (3,)
        First voxel of the window on the conformed grid (negative: padding).
    window_shape : tuple of 3 int
        Window size (multiples of the network's size multiple).
    """

    image: Image
    conformed: np.ndarray
    conformed_affine: np.ndarray
    window_start: np.ndarray
    window_shape: tuple[int, int, int]

    @property
    def grids(self) -> ScanGrids:
        """The input, conformed and window grids (no voxel data)."""
        image = self.image
        return ScanGrids(
            tuple(image.shape), image.affine, image.header, image.path,
            tuple(self.conformed.shape), self.conformed_affine, self.window_start, self.window_shape,
        )  # fmt: skip

    @property
    def window_affine(self) -> np.ndarray:
        """Voxel-to-world affine of the window."""
        return self.grids.window_affine

    def inside_window(self) -> tuple[slice, slice, slice]:
        """The part of the window that lies inside the conformed scan (not padding)."""
        return self.grids.inside_window()

    def network_input(self) -> np.ndarray:
        """The window of normalised intensities, float32 ``(1, X, Y, Z, 1)``."""
        return extract_window(self.conformed, self.window_start, self.window_shape)[None, ..., None]


def normalise_intensities(
    data: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5), *, name: str = "image"
) -> np.ndarray:
    """Clip to the ``percentiles`` of all voxels and map linearly to [0, 1] (float32).

    Raises
    ------
    ValueError
        The two percentiles are equal (a constant image, e.g. all zeros).
    """
    low, high = np.percentile(data, percentiles)
    if not high > low:
        raise ValueError(
            f"{name} has no intensity contrast: its {percentiles[0]}th and {percentiles[1]}th percentiles "
            f"are both {low:g} (empty or constant image)"
        )
    out = np.clip(data, low, high).astype(np.float32)
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return out


def _round_up(values: np.ndarray, multiple: int) -> np.ndarray:
    return (-(-np.asarray(values, dtype=int) // multiple) * multiple).astype(int)


def head_window(
    normalised: np.ndarray,
    size_multiple: int,
    *,
    threshold: float = 0.1,
    min_size: int = 1,
    crop: tuple[int, int, int] | None = None,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Window ``(start, shape)`` centred on the head's bounding box.

    The box holds the slices along each axis that contain at least 0.1 % of the most
    populated slice's voxels above ``threshold`` (isolated bright noise voxels do not
    stretch it). The window shape is the box size (at least ``min_size``) or, when given,
    exactly ``crop``; either is rounded up to ``size_multiple``.
    """
    above = normalised > threshold
    starts, shape = [], []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        counts = above.sum(axis=others)
        present = np.flatnonzero(counts >= max(1, 1e-3 * counts.max()))
        low, high = (present[0], present[-1] + 1) if present.size else (0, normalised.shape[axis])
        extent = crop[axis] if crop is not None else max(high - low, min_size)
        size = int(_round_up(extent, size_multiple))
        starts.append(low + (high - low - size) // 2)
        shape.append(size)
    return np.array(starts, dtype=int), (shape[0], shape[1], shape[2])


def extract_window(data: np.ndarray, start: np.ndarray, shape: tuple[int, ...], fill: float = 0.0) -> np.ndarray:
    """Copy of ``data[start : start + shape]`` (spatial axes), padded with ``fill`` outside ``data``."""
    start = np.asarray(start, dtype=int)
    stop = start + np.asarray(shape)
    out = np.full(tuple(shape) + data.shape[3:], fill, dtype=data.dtype)
    src = tuple(slice(max(0, a), min(n, b)) for a, b, n in zip(start, stop, data.shape))
    dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, start))
    if all(s.stop > s.start for s in src):
        out[dst] = data[src]
    return out


def prepare_scan(image: Image, resolution_mm: float, size_multiple: int, settings: InferenceSettings) -> PreparedScan:
    """Run steps 1-5 of the module docstring on ``image``.

    Raises
    ------
    ImageError
        The scan has no usable intensities (constant, e.g. all zeros, possibly after
        ``intensity_clip``); the message names the file.
    """
    data = image.data
    if settings.intensity_clip is not None:
        data = np.clip(data, *settings.intensity_clip)
    data, affine = reorient(data, image.affine, "RAS")
    data, affine = conform(data, affine, resolution_mm, tolerance=settings.resample_tolerance)
    name = str(image.path) if image.path is not None else "image"
    try:
        normalised = normalise_intensities(data, settings.percentiles, name=name)
    except ValueError as err:
        raise ImageError(image.path or "<array>", str(err).removeprefix(f"{name} ")) from None
    start, shape = head_window(
        normalised, size_multiple, threshold=settings.head_threshold, min_size=settings.min_size, crop=settings.crop
    )
    return PreparedScan(image, normalised, affine, start, shape)
