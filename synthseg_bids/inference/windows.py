"""Windows and patches: a network run on an input too large for one pass.

:func:`sliding_window_inference` takes a batch, a predictor and a window rule, in the
manner of MONAI's function of that name: an input of at most ``max_voxels`` goes through
the predictor whole; a larger one is cut into overlapping cubic patches whose posteriors
are averaged where they overlap (uniform weights). The patches start on multiples of the
network's size multiple, so each patch meets the network's pooling grid at the same phase
as the whole input would.

The test-time ensembles around a window (left/right flip, shifted copies: :mod:`.ensemble`)
call it for every copy of the window they run.
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np

__all__ = ["patch_starts", "sliding_window_inference"]


def patch_starts(length: int, edge: int, overlap: int, multiple: int) -> tuple[np.ndarray, int]:
    """The starts of the patches along one axis of ``length`` voxels, and their size.

    The size is ``edge`` (at most ``length``); the patches overlap by at least ``overlap``
    voxels where the axis allows it, start on multiples of ``multiple``, and the last one
    ends at the axis's end when ``length - size`` is a multiple of ``multiple``.

    >>> patch_starts(96, 64, 16, 16)
    (array([ 0, 32]), 64)
    >>> patch_starts(40, 64, 16, 16)
    (array([0]), 40)
    """
    size = min(edge, length)
    n = 1 if size >= length else -(-(length - overlap) // (size - overlap))
    first = np.unique(np.rint(np.linspace(0, length - size, n) / multiple).astype(int) * multiple)
    return first, size


def sliding_window_inference(
    inputs: np.ndarray,
    predictor: Callable[[np.ndarray], np.ndarray],
    *,
    max_voxels: int,
    window_size: int,
    overlap: int,
    size_multiple: int,
) -> np.ndarray:
    """Posteriors ``(X, Y, Z, K)`` of ``predictor`` on ``inputs`` ``(1, X, Y, Z, C)``, on the host.

    Parameters
    ----------
    inputs
        One image (batch of 1), channels last; spatial sizes multiples of ``size_multiple``
        (as the network's windows are: the patches then cover every voxel).
    predictor
        ``predictor(patch)`` maps ``(1, x, y, z, C)`` to float32 ``(1, x, y, z, K)``.
    max_voxels
        Inputs with at most this many voxels run whole.
    window_size
        Edge of the cubic patches of larger inputs, rounded up to ``size_multiple``
        (cut to the input's size along shorter axes).
    overlap
        Smallest overlap (voxels) of neighbouring patches.
    size_multiple
        Patch sizes and starts are multiples of it.

    Returns
    -------
    ndarray
        float32; where patches overlap, the mean of their posteriors.
    """
    shape = inputs.shape[1:4]
    if int(np.prod(shape)) <= max_voxels:
        return predictor(inputs)[0]
    edge = -(-window_size // size_multiple) * size_multiple
    starts, counts = [], []
    for length in shape:
        first, size = patch_starts(length, edge, overlap, size_multiple)
        starts.append([(int(s), size) for s in first])
        cover = np.zeros(length, dtype=np.float32)
        for s in first:
            cover[s : s + size] += 1
        counts.append(cover)
    out = None
    for patch in itertools.product(*starts):
        box = tuple(slice(s, s + n) for s, n in patch)
        part = predictor(np.ascontiguousarray(inputs[(slice(None),) + box]))[0]
        if out is None:
            out = np.zeros(tuple(shape) + (part.shape[-1],), dtype=np.float32)
        out[box] += part
    out /= np.multiply.outer(np.multiply.outer(counts[0], counts[1]), counts[2])[..., None]
    return out
