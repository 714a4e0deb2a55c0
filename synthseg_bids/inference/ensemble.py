"""The test-time ensemble of shifted windows (``InferenceSettings.shifts``).

Copy ``k`` of the network's window (``k`` = 0 .. shifts - 1) is its content moved by
``d = round(k * m / shifts)`` voxels towards the origin along every axis (``m``: the network's
size multiple; zeros fill in), so that the network's pooling grid meets the scan at another
phase; its posteriors are moved back and averaged over the copies that cover each voxel
(:func:`shift_ensemble`). The copies have the window's size, so each runs as the window
does (whole, or in patches: :func:`~.windows.sliding_window_inference`). The left/right
flip, the other half of the ensemble, is averaged on the device (:mod:`.prediction`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..network.unet_slabs import SlabForward

__all__ = ["coverage", "mean_of_slabs", "shift_ensemble", "shift_offsets", "shifted"]


def shift_offsets(count: int, multiple: int) -> list[int]:
    """The shifts ``d`` of the ``count`` copies for a network of size multiple ``multiple``.

    >>> shift_offsets(4, 16)
    [0, 4, 8, 12]

    Raises
    ------
    ValueError
        ``count`` above ``multiple`` (two copies would have the same phase).
    """
    if count > multiple:
        raise ValueError(f"shifts ({count}) cannot exceed the network's size multiple ({multiple})")
    return [int(round(k * multiple / count)) for k in range(count)]


def shifted(batch: np.ndarray, d: int) -> np.ndarray:
    """``batch`` ``(1, X, Y, Z, 1)`` with its content moved by ``d`` voxels towards the origin (zeros fill in)."""
    if d == 0:
        return batch
    out = np.zeros_like(batch)
    out[:, :-d, :-d, :-d] = batch[:, d:, d:, d:]
    return out


def coverage(shape: tuple, offsets: list[int]) -> np.ndarray:
    """``(1, X, Y, Z, 1)`` float32: how many copies of :func:`shifted` cover each voxel of the window.

    Copy ``d`` covers the voxels whose indices are all at least ``d``.
    """
    x, y, z = (np.arange(n) for n in shape)
    smallest = np.minimum(np.minimum(x[:, None, None], y[None, :, None]), z[None, None, :])
    count = np.searchsorted(np.sort(offsets), smallest, side="right")
    return count.astype(np.float32)[None, ..., None]


def mean_of_slabs(
    copies: Iterable[tuple[int, np.ndarray]],
    slabs: Callable[[np.ndarray], Iterator[tuple[int, int, Any]]],
    shape: tuple,
    channels: int,
    max_voxels: int,
    patched: Callable[[np.ndarray], np.ndarray],
    coverage: np.ndarray,
) -> Any:
    """TensorFlow: the mean over ``(d, copy)`` of the copies' posteriors moved back by ``d``, slab by slab.

    ``copy`` is the window's content moved by ``d`` towards the origin (:func:`shifted`); its
    posteriors come in y slabs from ``slabs`` (or whole from ``patched`` when the window is
    above ``max_voxels``) and go straight into one variable of the window's size, divided by
    ``coverage`` at the end; its value is returned.
    """
    import tensorflow as tf

    _, x, y, z, _ = shape
    total = tf.Variable(tf.zeros((1, x, y, z, channels), tf.float32), trainable=False)
    for d, copy in copies:
        if int(np.prod(copy.shape[1:4])) > max_voxels:
            total[:, d:, d:, d:].assign(total[:, d:, d:, d:] + patched(copy)[None, : x - d, : y - d, : z - d])
            continue
        for start, stop, part in slabs(copy):
            lo, hi = start + d, min(stop + d, y)  # window planes of this slab
            if lo < hi:
                window = total[:, d:, lo:hi, d:]
                total[:, d:, lo:hi, d:].assign(window + part[:, : x - d, : hi - lo, : z - d])
            del part
    total.assign(total / coverage)
    return total.value()


def shift_ensemble(
    batch: np.ndarray,
    count: int,
    multiple: int,
    network_pass: Callable[[np.ndarray], Any],
    *,
    slabs: SlabForward | None = None,
    max_voxels: int,
    patched: Callable[[np.ndarray], np.ndarray],
    channels: int,
) -> Any:
    """Mean ``(1, X, Y, Z, K)`` posteriors of the window ``batch`` and its ``count - 1`` shifted copies.

    ``network_pass(copy)`` gives a copy's ``(1, X, Y, Z, K)`` posteriors (a device tensor or
    an array). A voxel's mean is over the copies that cover it (those with ``d`` at most its
    smallest index): every copy inside, the window alone in its first ``d`` planes. With
    ``slabs`` (a U-Net that runs its last level in y slabs, TensorFlow), each slab is added
    into one window-sized sum as it comes (:func:`mean_of_slabs`; ``patched``: the host pass
    of a copy above ``max_voxels``, ``channels``: K).
    """
    if count == 1:
        return network_pass(batch)
    offsets = shift_offsets(count, multiple)
    copies = ((d, shifted(batch, d)) for d in offsets)
    cover = coverage(batch.shape[1:4], offsets)
    if slabs is None:
        import keras

        total = None
        for d, copy in copies:
            out = network_pass(copy)
            if d:
                out = keras.ops.pad(out[:, : out.shape[1] - d, : out.shape[2] - d, : out.shape[3] - d],
                                    [(0, 0), (d, 0), (d, 0), (d, 0), (0, 0)])
            total = out if total is None else total + out
        return total / cover
    return mean_of_slabs(copies, slabs, batch.shape, channels, max_voxels, patched, cover)
