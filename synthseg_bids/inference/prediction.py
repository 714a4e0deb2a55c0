"""The work on the posteriors that runs next to the network, on its device.

Written once with ``keras.ops`` and compiled by the backend (``tf.function`` on
TensorFlow, ``jax.jit`` on JAX; run eagerly on any other backend), so TensorFlow and JAX
share one code path, and so do Keras models and plain numpy callables (whose
posteriors are handed over as arrays):

- :meth:`DevicePosteriors.combine`: flip test-time augmentation (the flipped pass is
  flipped back, its left/right channels swapped with ``table.flip_permutation``, and
  averaged with the first pass; the joint histogram of the two passes' argmax channels
  feeds the QC flip Dice), Gaussian smoothing (a separable depthwise convolution,
  the kernel and the nearest-voxel boundary of
  ``scipy.ndimage.gaussian_filter(..., truncate=4.0, mode="nearest")``) and the masks of
  the connected-component clean-up (brain, and each topological group), as uint8;
- :meth:`DevicePosteriors.finish`, once the host has reduced the masks to their largest
  components: zeroes every structure's posterior outside its kept masks, renormalises,
  and returns only what the host needs: uint8 labels, per-channel posterior sums (the
  volumes), per-channel voxel counts and confidence sums (the QC), and the posteriors
  themselves only when asked for (resampling onto the input grid, writing them).

The posteriors stay on the device between the two calls, channel-first ``(K, X, y, Z)``
slabs along y (as the smoothing along y makes them), never joined into one tensor: the
masks and :meth:`DevicePosteriors.finish` work slab by slab (all their steps are per voxel,
or sums along z), and ``finish`` lets each slab go once used, so that no second copy of
the window's posteriors, nor a full-size temporary of the clean-up, exists next to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ..core.labels import LabelTable

__all__ = ["CombinedPosteriors", "DevicePosteriors", "FinishedPosteriors", "gaussian_kernel"]


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The 1D kernel of :func:`scipy.ndimage.gaussian_filter1d` (radius ``int(truncate * sigma + 0.5)``)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / float(sigma)) ** 2)
    return weights / weights.sum()


class Backend:
    """Compiling functions and moving arrays for the current Keras backend.

    Parameters
    ----------
    device : str
        'cpu' or 'gpu' (JAX: arrays are placed on that platform's first device); any other
        value leaves the backend's default placement.
    """

    def __init__(self, device: str = "custom"):
        import keras

        self.name = keras.backend.backend()
        self._target = None
        if self.name == "jax":
            import jax

            self._target = jax.devices(device)[0] if device in ("cpu", "gpu") else jax.devices()[0]

    def compile(self, fn: Callable, static: tuple[str, ...] = ()) -> Callable:
        """``fn`` compiled by the backend (``static``: Python-valued keyword arguments).

        TensorFlow traces ``fn`` again for new shapes until it has seen two (then one
        shape-polymorphic graph serves every scan); JAX compiles it once per input shape.
        """
        if self.name == "tensorflow":
            import tensorflow as tf

            return tf.function(fn, reduce_retracing=True)
        if self.name == "jax":
            import jax

            return jax.jit(fn, static_argnames=static)
        return fn

    def put(self, array: Any) -> Any:
        """A host array as a tensor on the device (tensors already there are returned as they are)."""
        if array is None:
            return None
        if self.name == "jax":
            import jax

            return jax.device_put(array, self._target)
        import keras

        return keras.ops.convert_to_tensor(array)

    @staticmethod
    def host(tensor: Any) -> np.ndarray:
        """A device tensor as a numpy array (a writable copy where the backend gives a read-only view)."""
        import keras

        out = keras.ops.convert_to_numpy(tensor)
        return out if out.flags.writeable else np.array(out)


@dataclass
class CombinedPosteriors:
    """Output of :meth:`DevicePosteriors.combine`.

    Attributes
    ----------
    posteriors : list of tensors
        Averaged, smoothed posteriors on the device: float32 channel-first slabs
        ``(K, X, y, Z)``, consecutive along y (:meth:`DevicePosteriors.finish` empties the list).
    masks : ndarray of bool or None
        ``(1 + G, X, Y, Z)``: the brain mask, then one mask per topological group (see
        :func:`synthseg_bids.core.postprocess.largest_components`); ``None`` without
        post-processing.
    profiles : tuple of 3 ndarray of bool or None
        ``(1 + G, X)``, ``(1 + G, Y)``, ``(1 + G, Z)``: whether each mask has a voxel in
        each slice along each axis (its bounding box).
    flip_joint : ndarray of int or None
        ``(K, K)``: voxels whose argmax channel is ``i`` in the first pass and ``j`` in the
        flipped pass (flipped back, channels swapped); ``None`` without flip.
    """

    posteriors: list
    masks: np.ndarray | None
    profiles: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    flip_joint: np.ndarray | None


@dataclass
class FinishedPosteriors:
    """Output of :meth:`DevicePosteriors.finish` (host arrays).

    Attributes
    ----------
    labels : ndarray of uint8, shape (X, Y, Z)
        Channel of the largest final posterior (ties: the lowest channel).
    sums : ndarray of float64, shape (K,)
        Sum of each channel's final posterior over the voxels kept by ``z_weights``, x and y
        ranges (the volumes, once multiplied by the voxel volume).
    label_counts : ndarray of int64, shape (K,)
        Voxels labelled as each channel (the whole window).
    label_confidence : ndarray of float64, shape (K,)
        Sum, over the voxels labelled as each channel, of their largest final posterior.
    posteriors : ndarray of float32, shape (X, Y, Z, K), or None
        The final posteriors, when asked for.
    """

    labels: np.ndarray
    sums: np.ndarray
    label_counts: np.ndarray
    label_confidence: np.ndarray
    posteriors: np.ndarray | None = None


class DevicePosteriors:
    """Flip TTA, smoothing, masks, clean-up, argmax and summaries on the device.

    Parameters
    ----------
    table : LabelTable
        Meaning of the K channels (flip permutation, topological groups).
    flip : bool
        Whether :meth:`combine` receives a flipped pass to average.
    smoothing_sigma : float
        Gaussian standard deviation in voxels (0: no smoothing).
    postprocess : str
        'full', 'brain' or 'none' (see :class:`~synthseg_bids.inference.InferenceSettings`).
    threshold : float
        Posterior above which a voxel is in a mask.
    backend : Backend
    background : int
        Channel of the background.
    """

    def __init__(
        self,
        table: LabelTable,
        *,
        flip: bool,
        smoothing_sigma: float,
        postprocess: str,
        threshold: float,
        backend: Backend,
        background: int = 0,
    ):
        n = len(table)
        if n > 255:
            raise ValueError(f"labels are returned as uint8: at most 255 channels, got {n}")
        self.n_channels = n
        self.flip = bool(flip)
        self.kernel = gaussian_kernel(smoothing_sigma).astype(np.float32) if smoothing_sigma > 0 else None
        self.postprocess = postprocess
        self.threshold = float(threshold)
        self.background = int(background)
        self.backend = backend
        self.permutation = np.asarray(table.flip_permutation, dtype=np.int32)
        groups = np.asarray(table.groups)
        foreground = np.arange(n) != background
        self.foreground = np.flatnonzero(foreground).astype(np.int32)
        self.group_ids = np.unique(groups[(groups > 0) & foreground]) if postprocess == "full" else np.array([], int)
        grouped = np.isin(groups, self.group_ids) & foreground
        # mask row of each channel's group (1..G), 0 for channels in no cleaned group
        self.group_row = np.where(grouped, np.searchsorted(self.group_ids, groups) + 1, 0).astype(np.int32)
        # row of the kept-mask table (see _finish) that keeps each channel
        self.keep_row = np.where(~foreground, 0, np.where(grouped, self.group_row + 1, 1)).astype(np.int32)
        self._slab = backend.compile(self._slab_fn)
        self._y_smooth = backend.compile(self._y_smooth_fn)
        self._masks = backend.compile(self._masks_fn)
        self._finish = backend.compile(self._finish_fn, static=("with_posteriors",))

    # -- host-facing ------------------------------------------------------------
    def combine(self, first: Any, flipped: Any = None) -> CombinedPosteriors:
        """Average (flip), smooth and threshold network posteriors ``(1, X, Y, Z, K)``.

        ``flipped`` is the prediction of the left/right-flipped input, as the network gave it
        (not flipped back); given exactly when ``flip`` is on. Arrays or device tensors; or,
        for ``flipped``, an iterator of ``(start, stop, posteriors)`` covering the y axis in
        consecutive slabs ``(1, X, stop - start, Z, K)`` (each is averaged with the same
        slab of ``first`` as it comes, so a whole flipped pass never exists).
        """
        if (flipped is not None) != self.flip:
            raise ValueError("give the flipped pass exactly when flip augmentation is on")
        host = self.backend.host
        first = self.backend.put(first)
        if flipped is not None and not isinstance(flipped, Iterator):
            flipped = iter([(0, int(first.shape[2]), flipped)])
        joint = None if flipped is None else np.zeros(self.n_channels**2, np.int64)
        stream = self._averaged(first, flipped, joint)
        del first, flipped  # held by the stream until it is used up
        # y smoothing one slab behind, so that only two averaged slabs exist at a time
        slabs = [self._y_smooth(before, slab, after) for before, slab, after in self._with_context(stream)]
        del stream
        masks = profiles = None
        if self.postprocess != "none":
            parts = [self._masks(slab) for slab in slabs]
            masks = np.concatenate([host(m) for m, _ in parts], axis=2).view(bool)
            along = [[host(p[axis]).view(bool) for _, p in parts] for axis in range(3)]
            # a mask reaches an x (or z) slice if it does in any slab; the y slices are the slabs'
            profiles = (np.logical_or.reduce(along[0]), np.concatenate(along[1], axis=1),
                        np.logical_or.reduce(along[2]))
        return CombinedPosteriors(
            posteriors=slabs,
            masks=masks,
            profiles=profiles,
            flip_joint=None if joint is None else joint.reshape(self.n_channels, -1),
        )

    def _averaged(self, first: Any, flipped: Iterator | None, joint: np.ndarray | None) -> Iterator[Any]:
        """Slabs ``(X, y, Z, K)``: ``first`` averaged with the flipped slabs, smoothed along x and z.

        Adds the joint histogram of each slab's argmax channels to ``joint``.
        """
        if flipped is None:
            yield self._slab(first)
            return
        length = int(first.shape[2])
        for start, stop, part in flipped:
            whole = start == 0 and stop == length
            mean, counts = self._slab(first if whole else first[:, :, start:stop], self.backend.put(part))
            joint += self.backend.host(counts).astype(np.int64)
            del part, counts
            yield mean

    def _with_context(self, slabs: Iterator[Any]) -> Iterator[tuple[Any, Any, Any]]:
        """``(before, slab, after)``: each slab with the ``radius`` y planes around it.

        Slabs are joined until at least ``radius`` planes thick (all but the last); beyond
        the window's edges the edge plane is repeated (scipy's ``mode="nearest"``).
        """
        import keras

        ops = keras.ops
        radius = 0 if self.kernel is None else (self.kernel.size - 1) // 2
        if radius == 0:
            for slab in slabs:
                yield None, slab, None
            return

        def edge(slab: Any, index: int) -> Any:
            plane = slab[:, index:] if index == -1 else slab[:, :1]
            return ops.repeat(plane, radius, axis=1)

        def chunks() -> Iterator[Any]:
            held = None
            for slab in slabs:
                held = slab if held is None else ops.concatenate([held, slab], axis=1)
                del slab
                if int(held.shape[1]) >= radius:
                    yield held
                    held = None
            if held is not None:
                yield held

        before = current = None
        for chunk in chunks():
            if current is not None:
                size = int(chunk.shape[1])
                after = chunk[:, :radius] if size >= radius else ops.concatenate(
                    [chunk, ops.repeat(chunk[:, -1:], radius - size, axis=1)], axis=1)
                yield before, current, after
                before = current[:, -radius:]
            else:
                before = edge(chunk, 0)
            current = chunk
            del chunk
        if current is not None:
            yield before, current, edge(current, -1)

    def finish(
        self,
        combined: CombinedPosteriors,
        kept: np.ndarray | None,
        inside: tuple[slice, slice, slice],
        *,
        with_posteriors: bool = False,
    ) -> FinishedPosteriors:
        """Clean-up with the kept masks, renormalisation, argmax and summaries.

        Slab by slab along y; each slab of ``combined.posteriors`` is let go once used
        (the list is left empty).

        Parameters
        ----------
        combined
            From :meth:`combine`.
        kept : ndarray of bool, shape (1 + G, X, Y, Z), or None
            The masks of ``combined`` reduced to their largest connected components; ``None``
            without post-processing (the posteriors are then used as they are).
        inside
            Region whose posteriors are summed into :attr:`FinishedPosteriors.sums`.
        with_posteriors
            Also return the final posteriors.
        """
        slabs = combined.posteriors
        n, size_x, _, size_z = (int(s) for s in slabs[0].shape)
        size_y = sum(int(slab.shape[2]) for slab in slabs)
        z_weights = np.zeros(size_z, np.float32)
        z_weights[inside[2]] = 1.0  # what each z plane's posteriors add to the sums
        z_weights = self.backend.put(z_weights)
        host = self.backend.host
        labels = np.empty((size_x, size_y, size_z), np.uint8)
        sums = np.empty((n, size_x, size_y), np.float32)
        posteriors = np.empty((size_x, size_y, size_z, n), np.float32) if with_posteriors else None
        counts, confidence = np.zeros(n, np.int64), np.zeros(n, np.float64)
        start = 0
        while slabs:
            slab = slabs.pop(0)
            stop = start + int(slab.shape[2])
            part = None if kept is None else self.backend.put(np.ascontiguousarray(kept[:, :, start:stop]).view(np.uint8))
            out = self._finish(slab, part, z_weights, with_posteriors=bool(with_posteriors))
            del slab, part
            labels[:, start:stop] = host(out[0])
            sums[:, :, start:stop] = host(out[1])
            counts += host(out[2]).sum(axis=0, dtype=np.int64)
            confidence += host(out[3]).sum(axis=0, dtype=np.float64)
            if with_posteriors:
                posteriors[:, start:stop] = host(out[4])
            del out
            start = stop
        return FinishedPosteriors(
            labels=labels,
            sums=sums[:, inside[0], inside[1]].sum(axis=(1, 2), dtype=np.float64),
            label_counts=counts,
            label_confidence=confidence,
            posteriors=posteriors,
        )

    # -- device functions (keras.ops) --------------------------------------------
    def _slab_fn(self, first, flipped=None):
        """A y slab ``(1, X, y, Z, K)`` of the first pass, averaged with the flipped pass's if given,
        smoothed along x and z, as ``(X, y, Z, K)``; with ``flipped``, also the joint histogram
        of the passes' argmax channels."""
        import keras

        ops = keras.ops
        post = first[0]
        counts = None
        if flipped is not None:
            n = self.n_channels
            mirrored = ops.take(ops.flip(flipped[0], axis=0), self.permutation, axis=-1)
            pair = ops.reshape(_argmax(post, -1) * n + _argmax(mirrored, -1), (-1,))
            counts = ops.segment_sum(ops.ones_like(pair), pair, num_segments=n * n)
            post = (post + mirrored) * 0.5
        if self.kernel is not None:
            post = self._smooth_along(self._smooth_along(post, 0), 2)
        return post if flipped is None else (post, counts)

    def _y_smooth_fn(self, before, post, after):
        """Smoothing along y of a slab with its context planes (see :meth:`_with_context`), channel-first."""
        import keras

        ops = keras.ops
        if self.kernel is not None:
            post = self._smooth_along(ops.concatenate([before, post, after], axis=1), 1, padded=True)
        return ops.transpose(post, (3, 0, 1, 2))  # channel-first: every channel a contiguous volume

    def _masks_fn(self, post):
        """Masks of the clean-up (brain, then each group) of channel-first posteriors, and their extents."""
        import keras

        ops = keras.ops
        brain = ops.sum(ops.take(post, self.foreground, axis=0), axis=0) > self.threshold
        masks = ops.cast(brain, "uint8")[None]
        if self.group_ids.size:
            above = ops.cast(post > self.threshold, "uint8")
            per_group = ops.segment_max(above, self.group_row, num_segments=self.group_ids.size + 1)
            masks = ops.concatenate([masks, per_group[1:]], axis=0)
        profiles = tuple(ops.max(masks, axis=tuple(a for a in (1, 2, 3) if a != axis)) for axis in (1, 2, 3))
        return masks, profiles

    def _smooth_along(self, post, axis: int, padded: bool = False):
        """Smoothing of ``post`` (X, Y, Z, K) along a spatial axis, nearest-voxel boundary.

        ``padded``: ``post`` already holds the ``radius`` planes beyond each end along
        ``axis``, and the result is ``2 * radius`` planes shorter.
        """
        import keras

        ops = keras.ops
        shape = ops.shape(post)  # ints, or tensors where the compiled function is shape-polymorphic
        length = shape[axis]
        before = after = 1
        for size in shape[:axis]:
            before = before * size
        for size in shape[axis + 1:]:
            after = after * size
        radius = (self.kernel.size - 1) // 2
        lines = ops.reshape(post, (before, length, after))
        if not padded:
            lines = ops.concatenate([lines[:, :1]] * radius + [lines] + [lines[:, -1:]] * radius, axis=1)
        kernel = ops.broadcast_to(ops.convert_to_tensor(self.kernel.reshape(-1, 1, 1)), (self.kernel.size, after, 1))
        out = ops.depthwise_conv(lines, kernel, strides=1, padding="valid", data_format="channels_last")
        if padded:
            return ops.reshape(out, tuple(shape[:axis]) + (length - 2 * radius,) + tuple(shape[axis + 1:]))
        return ops.reshape(out, shape)

    def _finish_fn(self, post, kept, z_weights, with_posteriors: bool = False):
        import keras

        ops = keras.ops
        n = self.n_channels
        shape = ops.shape(post)
        weights = ops.broadcast_to(z_weights, shape[1:])  # per voxel: what its posteriors add to the sums
        empty = None
        if kept is not None:
            brain = kept[:1]
            rows = [ops.ones_like(brain), brain]
            if kept.shape[0] > 1:
                rows.append(kept[1:] * brain)
            keep = ops.take(ops.concatenate(rows, axis=0), self.keep_row, axis=0)
            post = post * ops.cast(keep, post.dtype)
            total = ops.sum(post, axis=0)
            # voxels left with nothing are background: posterior 1 there
            empty = total <= 0
            total = ops.where(empty, ops.ones_like(total), total)
            weights = weights / total
        labels = _argmax(post, 0)
        top = ops.max(post, axis=0)
        sums = ops.sum(post * weights[None], axis=3)  # (K, X, Y): the host keeps the x, y range
        if empty is not None:
            labels = ops.where(empty, self.background, labels)
            top = ops.where(empty, ops.ones_like(top), top / total)
            filled = ops.sum(ops.where(empty, z_weights, ops.zeros_like(total)), axis=2)
            sums = sums + ops.convert_to_tensor(np.arange(n) == self.background, sums.dtype)[:, None, None] * filled
        slab = ops.reshape(ops.arange(shape[1], dtype="int32"), (-1, 1, 1)) * n
        ids = ops.reshape(slab + labels, (-1,))
        segments = shape[1] * n  # per x-slab: short float32 sums, added up on the host
        counts = ops.reshape(ops.segment_sum(ops.ones_like(ids), ids, num_segments=segments), (-1, n))
        confidence = ops.reshape(ops.segment_sum(ops.reshape(top, (-1,)), ids, num_segments=segments), (-1, n))
        out = (ops.cast(labels, "uint8"), sums, counts, confidence)
        if with_posteriors:
            if empty is not None:
                background = ops.convert_to_tensor(np.arange(n) == self.background)[:, None, None, None]
                post = ops.where(ops.logical_and(empty[None], background), ops.ones_like(post), post / total[None])
            out = out + (ops.transpose(post, (1, 2, 3, 0)),)
        return out


def _argmax(x, axis: int):
    """``argmax`` along ``axis`` (ties: the first), int32: max, then the first channel equal to it.

    Faster than TensorFlow's own argmax on the CPU, and the same on every backend.
    """
    import keras

    ops = keras.ops
    n = int(x.shape[axis])
    shape = [1] * len(x.shape)
    shape[axis] = n
    rank = ops.convert_to_tensor(np.arange(n, 0, -1, dtype=np.int32 if n > 255 else np.uint8).reshape(shape))
    top = ops.max(x, axis=axis, keepdims=True)
    first = ops.max(ops.cast(x == top, rank.dtype) * rank, axis=axis)
    return n - ops.cast(first, "int32")
