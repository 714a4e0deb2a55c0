"""Segment scans of any contrast, resolution and orientation with a loaded network.

Pipeline of :meth:`Segmenter.segment` (geometry in :mod:`.preprocess`):

1. load and validate the scan (:func:`~synthseg_bids.core.io.load_image`);
2. RAS, model resolution (cubic spline), intensities in [0, 1], window on the head;
3. network on the window, batch 1 (in overlapping patches above ``max_voxels``);
   with ``flip``, also on the left/right-flipped window. A U-Net of
   :func:`~synthseg_bids.network.build_unet` on TensorFlow runs its full-resolution decoder
   level in y slabs with a halo (:func:`_unet_stages`: the same output, without that level's
   full-size temporaries), and the flipped pass goes to step 4 slab by slab;
4. on the network's device (:mod:`.prediction`, compiled with the network): the flipped
   pass flipped back with left/right channels swapped and averaged, Gaussian smoothing of
   the posteriors, the masks of the connected-component clean-up;
5. on the host, the masks (uint8, not the posteriors) reduced to their largest connected
   components (:func:`~synthseg_bids.core.postprocess.largest_components`);
6. on the device again: posteriors outside the kept components zeroed and renormalised,
   argmax, the per-channel sums behind the volumes and QC scores;
7. labels onto the input grid: voxel copies when the grids align, else the posteriors
   interpolated trilinearly at label borders
   (:func:`~synthseg_bids.core.resample.resample_posteriors`); channel -> FreeSurfer label.

The posteriors leave the device only when the input grid needs them (step 7) or they are
asked for. The network is any :class:`Network`: a Keras model file loaded by
:meth:`Network.from_file` (what :class:`Segmenter` does for paths), or a plain callable
(tests, other back-ends) wrapped with :class:`Network` directly; steps 4 and 6 are the
same compiled functions for both.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from ..core.io import Image, ImageError, atomic_path, load_image, save_image, strip_image_suffix, table_text
from ..core.labels import LabelTable
from ..core.postprocess import largest_components
from ..core.resample import copy_to_grid, grids_align, resample_posteriors
from ..core.volumes import FLAG_TEXT, QC_FORMAT, VOLUME_FORMAT, volumes_from_posterior_sums
from .look_ahead import LookAhead
from .memory import check_posteriors_fit
from .prediction import Backend, CombinedPosteriors, DevicePosteriors
from .preprocess import ScanGrids, extract_window, prepare_scan
from .qc import QualityControl, quality_control_from_counts
from .settings import InferenceSettings

__all__ = [
    "Network",
    "SegmentationResult",
    "Segmenter",
    "cached_segmenter",
    "default_model_path",
    "write_result",
]

#: Where the package's trained model is installed.
_DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "default_model.npz"


def default_model_path() -> Path:
    """Path of the model shipped with the package (it may be missing in a source checkout)."""
    return _DEFAULT_MODEL


@dataclass
class Network:
    """A segmentation network as the segmenter uses it.

    Attributes
    ----------
    predict : callable
        ``predict(batch)`` maps float32 intensities ``(1, X, Y, Z, 1)`` in [0, 1] to float32
        posteriors ``(1, X, Y, Z, K)`` (channels summing to one), for any X, Y, Z that are
        multiples of ``size_multiple``.
    label_table : LabelTable
        Meaning of the K channels.
    resolution_mm : float
        Voxel size (mm) of the images the network expects.
    size_multiple : int
        Spatial sizes must be multiples of this.
    path : Path or None
        Model file, when loaded from one.
    info : ModelInfo or None
        Model file metadata (:class:`synthseg_bids.network.ModelInfo`).
    device : str
        'cpu' or 'gpu' for Keras models; 'custom' for callables.
    precision : str
        Arithmetic the network runs in: 'float32' or 'bfloat16' (:mod:`.precision`).
    forward : callable or None
        Keras models: ``predict`` without the copy to the host (it returns the backend's
        device tensor), so that the segmenter's compiled steps run on the posteriors where
        they are. ``None`` for callables (their numpy output is moved to the device).
    """

    predict: Callable[[np.ndarray], np.ndarray]
    label_table: LabelTable
    resolution_mm: float = 1.0
    size_multiple: int = 16
    path: Path | None = None
    info: Any = None
    device: str = "custom"
    forward: Callable[[np.ndarray], Any] | None = None
    precision: str = "float32"

    @classmethod
    def from_keras(
        cls, model: Any, info: Any, *, path: Path | None = None, device: str = "cpu", precision: str = "float32"
    ) -> "Network":
        """Wrap a Keras U-Net and its :class:`~synthseg_bids.network.ModelInfo`.

        ``precision`` names the arithmetic ``model`` was built with ('float32', or
        'bfloat16' for Keras' ``mixed_bfloat16`` policy); the posteriors are float32 either way.

        On TensorFlow the model runs in one ``tf.function`` traced once for every input
        shape. On JAX it runs as a ``jax.jit`` of its stateless call (compiled once for
        every input shape), with its current weights and the inputs placed on
        ``device`` ('cpu' or 'gpu'); later changes to the model's weights are not seen.
        """
        backend = Backend(device)
        forward = _keras_forward(model, backend)
        return cls(
            predict=lambda batch: backend.host(forward(batch)),
            label_table=info.label_table,
            resolution_mm=float(info.resolution_mm),
            size_multiple=int(info.network.size_multiple),
            path=path,
            info=info,
            device=device,
            forward=forward,
            precision=precision,
        )

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, *, device: str = "auto", threads: int | None = None, precision: str = "auto"
    ) -> "Network":
        """Load a model file after choosing the Keras backend's device, threads (:mod:`.device`) and precision.

        ``precision`` ('auto', 'float32', 'bfloat16') is resolved on the device used
        (:func:`~synthseg_bids.inference.precision.resolve_precision`).

        Raises
        ------
        synthseg_bids.network.ModelFileError
            Missing or invalid model file (the message names it).
        synthseg_bids.inference.device.DeviceError
            ``device='gpu'`` without a GPU, a device change after TensorFlow started,
            ``threads`` on JAX, or bfloat16 asked of a device without it.
        """
        from ..network import load_model
        from .device import configure_device
        from .precision import keras_policy, resolve_precision

        path = Path(path).resolve()
        used = configure_device(device, threads)
        arithmetic = resolve_precision(precision, used)
        model, info = load_model(path, dtype_policy=keras_policy(arithmetic))
        return cls.from_keras(model, info, path=path, device=used, precision=arithmetic)


def _keras_forward(model: Any, backend: Backend) -> Callable[[np.ndarray], Any]:
    """``model`` compiled for inference: host batch -> float32 posteriors on the device."""
    if backend.name == "jax":
        import jax

        trainable = backend.put([v.value for v in model.trainable_variables])
        non_trainable = backend.put([v.value for v in model.non_trainable_variables])

        @jax.jit
        def run_jax(trainable, non_trainable, batch):
            outputs, _ = model.stateless_call(trainable, non_trainable, batch, training=False)
            return outputs.astype("float32")

        return lambda batch: run_jax(trainable, non_trainable, backend.put(np.asarray(batch, np.float32)))
    if backend.name == "tensorflow":
        import tensorflow as tf

        stages = _unet_stages(model)
        if stages is not None:
            slabs = _sliced_forward(*stages)
            forward = lambda batch: tf.concat([part for _, _, part in slabs(batch)], axis=2)  # noqa: E731
            forward.slabs = slabs
            return forward

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, None, 1], tf.float32)])
        def run_tf(batch):
            return tf.cast(model(batch, training=False), tf.float32)

        return lambda batch: run_tf(tf.constant(batch, dtype=tf.float32))
    import keras

    return lambda batch: keras.ops.cast(model(backend.put(np.asarray(batch, np.float32)), training=False), "float32")


def _shifted(batch: np.ndarray, d: int) -> np.ndarray:
    """``batch`` ``(1, X, Y, Z, 1)`` with its content moved by ``d`` voxels towards the origin (zeros fill in)."""
    if d == 0:
        return batch
    out = np.zeros_like(batch)
    out[:, :-d, :-d, :-d] = batch[:, d:, d:, d:]
    return out


def _coverage(shape: tuple, offsets: list[int]) -> np.ndarray:
    """``(1, X, Y, Z, 1)`` float32: how many copies of :func:`_shifted` cover each voxel of the window.

    Copy ``d`` covers the voxels whose indices are all at least ``d``.
    """
    x, y, z = (np.arange(n) for n in shape)
    smallest = np.minimum(np.minimum(x[:, None, None], y[None, :, None]), z[None, None, :])
    count = np.searchsorted(np.sort(offsets), smallest, side="right")
    return count.astype(np.float32)[None, ..., None]


def _mean_of_slabs(
    copies: Iterable[tuple[int, np.ndarray]],
    slabs: Callable[[np.ndarray], Iterator[tuple[int, int, Any]]],
    shape: tuple,
    channels: int,
    max_voxels: int,
    patched: Callable[[np.ndarray], np.ndarray],
    coverage: np.ndarray,
) -> Any:
    """TensorFlow: the mean over ``(d, copy)`` of the copies' posteriors moved back by ``d``, slab by slab.

    ``copy`` is the window's content moved by ``d`` towards the origin (:func:`_shifted`); its
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


#: Thickness (voxels along y) of the slabs in which the U-Net's last level runs (see :func:`_unet_stages`).
_HEAD_SLAB = 32
#: Layers the last level may hold: each maps a voxel's output from a neighbourhood of its input.
_HEAD_LAYERS = ("Conv3D", "BatchNormalization", "Activation", "SpatialDropout3D", "Dropout")


def _unet_stages(model: Any) -> tuple[Any, Any, list, int] | None:
    """A U-Net of :func:`~synthseg_bids.network.build_unet` cut before its full-resolution decoder.

    Returns ``(trunk, up-sampling and concatenation layers, last-level layers, halo)``:
    ``trunk`` maps the image to the level-0 skip features and the level-1 decoder output;
    the last level (up-sampling, concatenation, convolutions, normalisation, logits,
    softmax) is a chain of layers whose output at a voxel depends on the inputs within
    ``halo`` voxels (even, for the 2x up-sampling), so that it can run in slabs with the
    same result as on the whole window, without its full-size temporaries (the 48-channel
    concatenation) ever existing at once. ``None`` for any other model (run whole).
    """
    import keras

    names = [layer.name for layer in model.layers]
    if "dec0_up" not in names or "dec0_concat" not in names or len(model.outputs) != 1:
        return None
    up, concat = model.get_layer("dec0_up"), model.get_layer("dec0_concat")
    skip_low = concat.input
    if not isinstance(skip_low, (list, tuple)) or len(skip_low) != 2 or skip_low[1] is not up.output:
        return None
    head = model.layers[names.index("dec0_concat") + 1:]
    previous, halo = concat.output, 0
    for layer in head:
        if type(layer).__name__ not in _HEAD_LAYERS or layer.input is not previous:
            return None
        if type(layer).__name__ == "Conv3D":
            if layer.padding != "same" or tuple(layer.strides) != (1, 1, 1) or tuple(layer.dilation_rate) != (1, 1, 1):
                return None
            halo += (int(layer.kernel_size[1]) - 1) // 2
        previous = layer.output
    if previous is not model.outputs[0] or tuple(up.size) != (2, 2, 2):
        return None
    trunk = keras.Model(model.inputs, [skip_low[0], up.input], name=f"{model.name}_trunk")
    return trunk, (up, concat), head, halo + halo % 2


def _sliced_forward(
    trunk: Any, joins: tuple[Any, Any], head: list, halo: int
) -> Callable[[np.ndarray], Iterator[tuple[int, int, Any]]]:
    """TensorFlow forward pass of a U-Net cut by :func:`_unet_stages`: trunk whole, last level in y slabs.

    The returned function yields ``(start, stop, posteriors)`` for consecutive y ranges
    (``posteriors``: ``(1, X, stop - start, Z, K)`` float32 tensor).

    Each slab of ``_HEAD_SLAB`` output planes runs on its input planes plus ``halo`` on each
    side (fewer at the window's edges, where the zero padding is the whole window's), so
    every output voxel sees the inputs it sees on the whole window.
    """
    import tensorflow as tf

    up, concat = joins
    skip_spec, low_spec = (tf.TensorSpec([1, None, None, None, int(t.shape[-1])], t.dtype) for t in trunk.outputs)

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, None, 1], tf.float32)])
    def run_trunk(batch):
        return tuple(trunk(batch, training=False))

    @tf.function(input_signature=[skip_spec, low_spec])
    def run_head(skip, low):
        tensor = concat([skip, up(low)])
        for layer in head:
            tensor = layer(tensor, training=False)
        return tf.cast(tensor, tf.float32)

    def slabs(batch: np.ndarray) -> Iterator[tuple[int, int, Any]]:
        skip, low = run_trunk(tf.constant(batch, dtype=tf.float32))
        length = int(skip.shape[2])
        for start in range(0, length, _HEAD_SLAB):
            stop = min(start + _HEAD_SLAB, length)
            lo, hi = max(0, start - halo), min(length, stop + halo)
            out = run_head(skip[:, :, lo:hi], low[:, :, lo // 2 : hi // 2])
            yield start, stop, out[:, :, start - lo : stop - lo]
            del out

    return slabs


@dataclass
class SegmentationResult:
    """Everything :meth:`Segmenter.segment` computes for one scan.

    Attributes
    ----------
    labels : Image
        int32 FreeSurfer label values on the input grid (input shape and affine).
    labels_conformed : Image
        int32 labels on the model's grid (RAS, model resolution) covering the scan.
    posteriors : ndarray or None
        float32 ``(X, Y, Z, K)`` on the input grid, channel ``k`` = ``label_table.values[k]``;
        only when asked for.
    volumes : dict
        Structure name -> mm^3 from the posteriors (background left out), then
        ``"total intracranial"``.
    qc : QualityControl
    timings : dict
        Seconds spent in 'load', 'preprocess', 'network' (the network passes with the
        flip averaging, smoothing and masks next to them), 'postprocess' and 'total'.
    label_table : LabelTable
    source : Path or None
        The scan's file.
    """

    labels: Image
    labels_conformed: Image
    posteriors: np.ndarray | None
    volumes: dict[str, float]
    qc: QualityControl
    timings: dict[str, float]
    label_table: LabelTable
    source: Path | None = None


@dataclass
class _Prepared:
    """A scan read and pre-processed, waiting for the network: its network input and grids only."""

    grids: ScanGrids
    batch: np.ndarray
    timings: dict[str, float]


class Segmenter:
    """Segments scans with one network, loaded once.

    Parameters
    ----------
    model : None, path or Network
        ``None``: the shipped model (:func:`default_model_path`); a path: a model file
        written by :func:`synthseg_bids.network.save_model`; or a ready :class:`Network`
        (e.g. a callable for tests). TensorFlow's device and threads are set from
        ``settings`` before a file is loaded (see :mod:`.device`).
    settings : InferenceSettings

    Examples
    --------
    >>> seg = Segmenter("model.npz", InferenceSettings(device="cpu"))  # doctest: +SKIP
    >>> result = seg.segment("sub-01_T1w.nii.gz")                       # doctest: +SKIP
    >>> result.volumes["total intracranial"]                            # doctest: +SKIP
    """

    def __init__(self, model: str | os.PathLike | Network | None = None, settings: InferenceSettings | None = None):
        self.settings = settings if settings is not None else InferenceSettings()
        if isinstance(model, Network):
            self.network = model
        else:
            path = Path(model) if model is not None else default_model_path()
            if model is None and not path.is_file():
                from ..network import ModelFileError

                raise ModelFileError(
                    path, "the default model is not installed with this package; give a model file (--model)"
                )
            self.network = Network.from_file(
                path, device=self.settings.device, threads=self.settings.threads, precision=self.settings.precision
            )
        self._device: DevicePosteriors | None = None
        self._ahead = LookAhead()

    @property
    def label_table(self) -> LabelTable:
        return self.network.label_table

    @property
    def model_info(self) -> Any:
        """The model file's :class:`~synthseg_bids.network.ModelInfo` (``None`` for callables)."""
        return self.network.info

    @property
    def model_path(self) -> Path | None:
        return self.network.path

    @property
    def device_posteriors(self) -> DevicePosteriors:
        """The compiled steps around the network (built, and Keras imported, on first use)."""
        if self._device is None:
            s = self.settings
            self._device = DevicePosteriors(
                self.label_table,
                flip=s.flip,
                smoothing_sigma=s.smoothing_sigma,
                postprocess=s.postprocess,
                threshold=s.posterior_threshold,
                backend=Backend(self.network.device),
            )
        return self._device

    # -- prediction ------------------------------------------------------------
    def network_posteriors(self, batch: np.ndarray) -> np.ndarray:
        """Posteriors ``(X, Y, Z, K)`` of the network alone for an input ``(1, X, Y, Z, 1)``, on the host.

        Inputs above ``settings.max_voxels`` are cut into overlapping cubic patches
        (edge ``patch_size`` rounded up to the size multiple, starts on multiples of it);
        the posteriors of overlapping patches are averaged.
        """
        shape = batch.shape[1:4]
        if int(np.prod(shape)) <= self.settings.max_voxels:
            return self._run(batch)[0]
        multiple = self.network.size_multiple
        edge = -(-self.settings.patch_size // multiple) * multiple
        overlap = self.settings.patch_overlap
        starts, counts = [], []
        for length in shape:
            size = min(edge, length)
            n = 1 if size >= length else -(-(length - overlap) // (size - overlap))
            first = np.unique(np.rint(np.linspace(0, length - size, n) / multiple).astype(int) * multiple)
            starts.append([(int(s), size) for s in first])
            cover = np.zeros(length, dtype=np.float32)
            for s in first:
                cover[s : s + size] += 1
            counts.append(cover)
        out = np.zeros(tuple(shape) + (len(self.label_table),), dtype=np.float32)
        for patch in itertools.product(*starts):
            box = tuple(slice(s, s + n) for s, n in patch)
            out[box] += self._run(np.ascontiguousarray(batch[(slice(None),) + box]))[0]
        out /= np.multiply.outer(np.multiply.outer(counts[0], counts[1]), counts[2])[..., None]
        return out

    def predict_window(self, batch: np.ndarray) -> CombinedPosteriors:
        """The network on an input ``(1, X, Y, Z, 1)`` (and on its flip), then the device steps.

        Returns the averaged, smoothed posteriors (left on the device) and the masks of the
        connected-component clean-up (:meth:`.DevicePosteriors.combine`).
        """
        # passed on directly, not kept here: the combining step releases each pass once used
        if not self.settings.flip:
            return self.device_posteriors.combine(self._ensemble_pass(batch))
        flipped = np.ascontiguousarray(batch[:, ::-1])
        slabs = getattr(self.network.forward, "slabs", None)
        if slabs is None or self.settings.shifts > 1 or int(np.prod(batch.shape[1:4])) > self.settings.max_voxels:
            return self.device_posteriors.combine(self._ensemble_pass(batch), self._ensemble_pass(flipped))
        # the flipped pass in y slabs, each averaged with the first pass as it comes: no second
        # full-size pass, nor full-size temporaries of the averaging, exist next to the first
        return self.device_posteriors.combine(self._network_pass(batch), self._checked_slabs(slabs(flipped), flipped))

    def _ensemble_pass(self, batch: np.ndarray) -> Any:
        """Mean ``(1, X, Y, Z, K)`` posteriors of the window and its shifted copies (``settings.shifts``).

        Copy ``k`` (1 .. shifts - 1) is the window's content moved by ``d = round(k * m / shifts)``
        voxels towards the origin along every axis (``m``: the network's size multiple; zeros
        fill in), so that the network's pooling grid meets the scan at another phase; its
        posteriors are moved back. The copies have the window's size, so they run as the window
        does (whole, or in patches above ``max_voxels``). A voxel's mean is over the copies that
        cover it (those with ``d`` at most its smallest index): every copy inside, the window
        alone in its first ``d`` planes. A U-Net that runs its last level in y slabs
        (TensorFlow) adds each slab into one window-sized sum as it comes.
        """
        count = self.settings.shifts
        if count == 1:
            return self._network_pass(batch)
        multiple = self.network.size_multiple
        if count > multiple:
            raise ValueError(f"shifts ({count}) cannot exceed the network's size multiple ({multiple})")
        offsets = [int(round(k * multiple / count)) for k in range(count)]
        copies = ((d, _shifted(batch, d)) for d in offsets)
        coverage = _coverage(batch.shape[1:4], offsets)
        slabs = getattr(self.network.forward, "slabs", None)
        if slabs is None:
            import keras

            total = None
            for d, copy in copies:
                out = self._network_pass(copy)
                if d:
                    out = keras.ops.pad(out[:, : out.shape[1] - d, : out.shape[2] - d, : out.shape[3] - d],
                                        [(0, 0), (d, 0), (d, 0), (d, 0), (0, 0)])
                total = out if total is None else total + out
            return total / coverage
        return _mean_of_slabs(copies, slabs, batch.shape, len(self.label_table), self.settings.max_voxels,
                              self.network_posteriors, coverage)

    def _checked_slabs(self, slabs: Iterator[tuple[int, int, Any]], batch: np.ndarray) -> Iterator:
        for start, stop, part in slabs:
            shape = list(batch.shape)
            shape[2] = stop - start
            self._check_shape(tuple(part.shape), tuple(shape))
            yield start, stop, part

    def _network_pass(self, batch: np.ndarray) -> Any:
        """``(1, X, Y, Z, K)`` posteriors: a device tensor for a Keras model on a whole window."""
        forward = self.network.forward
        if forward is None or int(np.prod(batch.shape[1:4])) > self.settings.max_voxels:
            return self.network_posteriors(batch)[None]
        out = forward(batch)
        self._check_shape(tuple(out.shape), batch.shape)
        return out

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = np.asarray(self.network.predict(batch), dtype=np.float32)
        self._check_shape(out.shape, batch.shape)
        return out

    def _check_shape(self, shape: tuple, batch_shape: tuple) -> None:
        expected = tuple(batch_shape[:4]) + (len(self.label_table),)
        if tuple(shape) != expected:
            raise ValueError(
                f"the network returned shape {tuple(shape)} for input {tuple(batch_shape)}; expected {expected}"
            )

    # -- pipeline ----------------------------------------------------------------
    def segment(self, scan: str | os.PathLike | Image, *, posteriors: bool = False) -> SegmentationResult:
        """Segment one scan (file or :class:`~synthseg_bids.core.io.Image`).

        Parameters
        ----------
        scan
            3D NIfTI/MGZ file (a 4D file with one volume is accepted) or an Image.
        posteriors
            Also return the posteriors on the input grid (memory: 4 bytes x K per voxel).

        Raises
        ------
        ImageError
            Unreadable, not 3D, non-finite or constant (e.g. all-zero) scan; or ``posteriors``
            asked for a scan whose posteriors cannot fit in memory
            (:func:`~synthseg_bids.inference.memory.check_posteriors_fit`). Names the file.
        """
        ahead = self._ahead.take(scan, posteriors)
        if ahead is not None:
            return ahead.result()
        return self._segment_now(scan, posteriors)

    def segment_ahead(self, scan: str | os.PathLike, *, posteriors: bool = False) -> bool:
        """Start segmenting the file ``scan`` in a background thread, for the next :meth:`segment` call.

        For one process segmenting scans in a known order with other work between them
        (see :mod:`.look_ahead`): call it right after a scan's result, so that the next
        scan is read and run through the network while this one is written. Returns
        whether it started (``False`` for a missing file). Errors are raised by the
        :meth:`segment` call that takes the result.
        """
        return self._ahead.start(scan, posteriors, lambda: self._segment_now(scan, posteriors))

    def _segment_now(self, scan: str | os.PathLike | Image, posteriors: bool) -> SegmentationResult:
        return self._predict(self._prepare(scan, posteriors), posteriors)

    def _prepare(self, scan: str | os.PathLike | Image, posteriors: bool) -> _Prepared:
        """Steps 1-2: read, check and pre-process (no network)."""
        tic = time.perf_counter()
        image = _checked(scan) if isinstance(scan, Image) else load_image(scan)
        if posteriors:
            check_posteriors_fit(image.path, image.shape, len(self.label_table))
        timings = {"load": time.perf_counter() - tic}
        tic = time.perf_counter()
        prepared = prepare_scan(image, self.network.resolution_mm, self.network.size_multiple, self.settings)
        # the scan and its conformed copy are let go here: only the window goes on
        job = _Prepared(prepared.grids, prepared.network_input(), timings)
        timings["preprocess"] = time.perf_counter() - tic
        return job

    def _predict(self, job: _Prepared, posteriors: bool) -> SegmentationResult:
        """Steps 3-7 on a pre-processed scan."""
        s = self.settings
        table = self.label_table
        grids, timings = job.grids, dict(job.timings)
        tic = time.perf_counter()
        combined = self.predict_window(job.batch)
        timings["network"] = time.perf_counter() - tic

        tic = time.perf_counter()
        kept = None
        if combined.masks is not None:
            kept = largest_components(combined.masks, profiles=combined.profiles)
            combined.masks = None
        window_affine = grids.window_affine
        interpolate = not grids_align(window_affine, grids.input_affine)
        finished = self.device_posteriors.finish(
            combined, kept, grids.inside_window(), with_posteriors=posteriors or interpolate
        )
        del kept
        # volumes inside the scan's field of view only (the window may be padded)
        volumes = volumes_from_posterior_sums(finished.sums, window_affine, table)
        qc = quality_control_from_counts(
            table,
            finished.label_counts,
            finished.label_confidence,
            combined.flip_joint,
            min_confidence=s.qc_min_confidence,
            min_flip_dice=s.qc_min_flip_dice,
        )
        del combined
        conformed = self._conformed_labels(grids, table.values[finished.labels])
        if finished.posteriors is None:
            input_index = copy_to_grid(finished.labels, window_affine, grids.input_shape, grids.input_affine)
            input_posteriors = None
        else:
            input_index, input_posteriors = resample_posteriors(
                finished.posteriors, window_affine, grids.input_shape, grids.input_affine,
                keep_posteriors=posteriors, index=finished.labels,
            )
        labels = Image(table.values[input_index], grids.input_affine.copy(), grids.input_header, None)
        timings["postprocess"] = time.perf_counter() - tic
        timings["total"] = sum(timings.values())
        return SegmentationResult(
            labels=labels,
            labels_conformed=conformed,
            posteriors=input_posteriors,
            volumes=volumes,
            qc=qc,
            timings=timings,
            label_table=table,
            source=grids.input_path,
        )

    @staticmethod
    def _conformed_labels(grids: ScanGrids, window_labels: np.ndarray) -> Image:
        data = extract_window(window_labels, -grids.window_start, grids.conformed_shape)
        return Image(data.astype(np.int32, copy=False), grids.conformed_affine.copy(), None, None)

    def segment_many(
        self, scans: Iterable[str | os.PathLike | Image], *, posteriors: bool = False
    ) -> Iterator[SegmentationResult]:
        """Segment scans one after the other with the loaded network (a generator), pipelined.

        While the network runs on scan *n* (a worker thread), scan *n + 1* is read and
        pre-processed (a second one) and the caller holds the result of scan *n - 1* (e.g.
        writes it): at most one scan is read ahead and one result waits for the caller.

        A bad scan raises its :class:`~synthseg_bids.core.io.ImageError` when reached;
        the results of earlier scans have been yielded already, and no later scan is read.
        """
        self._ahead.take(None)  # a scan segmented ahead is dropped first: one network pass at a time
        scans = iter(scans)
        reader = ThreadPoolExecutor(1, thread_name_prefix="synthseg-read")
        predictor = ThreadPoolExecutor(1, thread_name_prefix="synthseg-predict")

        def read_next() -> Future | None:
            scan = next(scans, _END)
            return None if scan is _END else reader.submit(self._prepare, scan, posteriors)

        try:
            reading = read_next()
            running: Future | None = None
            while reading is not None or running is not None:
                job = error = None
                if reading is not None:
                    try:
                        job = reading.result()
                    except Exception as err:  # raised below, after the previous scan's result
                        error = err
                done = running.result() if running is not None else None
                running = predictor.submit(self._predict, job, posteriors) if job is not None else None
                reading = read_next() if job is not None else None
                if done is not None:
                    yield done
                if error is not None:
                    raise error
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
            predictor.shutdown(wait=True, cancel_futures=True)


_END = object()


def _checked(image: Image) -> Image:
    """The in-memory scan, or :class:`ImageError` if it is not a finite 3D array."""
    name = image.path if image.path is not None else "<array>"
    if image.data.ndim != 3:
        raise ImageError(name, f"is {image.data.ndim}D with shape {image.data.shape}; expected a 3D volume")
    if not np.all(np.isfinite(image.data)):
        raise ImageError(name, "contains NaN or infinite voxel(s)")
    return image


_SEGMENTERS: dict[tuple, Segmenter] = {}


def cached_segmenter(
    model: str | os.PathLike | None = None, settings: InferenceSettings | None = None
) -> Segmenter:
    """A :class:`Segmenter` shared within the process, keyed by resolved model path,
    its modification time and the settings (a rewritten model file is reloaded)."""
    settings = settings if settings is not None else InferenceSettings()
    path = (Path(model) if model is not None else default_model_path()).resolve()
    key = (str(path), path.stat().st_mtime_ns if path.exists() else None, settings)
    if key not in _SEGMENTERS:
        _SEGMENTERS[key] = Segmenter(None if model is None else path, settings)
    return _SEGMENTERS[key]


def write_result(
    result: SegmentationResult,
    *,
    labels: str | os.PathLike | None = None,
    labels_conformed: str | os.PathLike | None = None,
    posteriors: str | os.PathLike | None = None,
    volumes: str | os.PathLike | None = None,
    qc: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write the chosen outputs of ``result``, all or none.

    Every file is first written under a temporary name next to its destination; they are
    renamed into place only once all are complete, so an error leaves no new file.

    Parameters
    ----------
    labels, labels_conformed : path, optional
        Label maps (.nii/.nii.gz/.mgz; int16 FreeSurfer values).
    posteriors : path, optional
        4D float32 posteriors on the input grid (``result.posteriors`` must exist).
    volumes : path, optional
        CSV, one header row and one row: ``scan``, each structure (mm^3), total intracranial.
    qc : path, optional
        CSV, one row: ``scan``, each QC score, ``flag``.

    Returns
    -------
    dict
        Output name -> path written.
    """
    if posteriors is not None and result.posteriors is None:
        raise ValueError("posteriors were not computed: call segment(..., posteriors=True)")
    scan = strip_image_suffix(result.source) if result.source is not None else ""
    written: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:

        def temporary(name: str, path: str | os.PathLike) -> Path:
            written[name] = Path(path)
            return stack.enter_context(atomic_path(path))

        if labels is not None:
            tmp = temporary("labels", labels)
            save_image(result.labels.data, result.labels.affine, tmp, dtype=np.int16, header=result.labels.header)
        if labels_conformed is not None:
            tmp = temporary("labels_conformed", labels_conformed)
            save_image(result.labels_conformed.data, result.labels_conformed.affine, tmp, dtype=np.int16)
        if posteriors is not None:
            tmp = temporary("posteriors", posteriors)
            save_image(result.posteriors, result.labels.affine, tmp, dtype=np.float32, header=result.labels.header)
        if volumes is not None:
            tmp = temporary("volumes", volumes)
            row = {"scan": scan, **{name: VOLUME_FORMAT % v for name, v in result.volumes.items()}}
            tmp.write_text(table_text(pd.DataFrame([row]), sep=","))
        if qc is not None:
            tmp = temporary("qc", qc)
            scores = result.qc.scores
            row = {"scan": scan, **{name: QC_FORMAT % v for name, v in scores.items()}, "flag": FLAG_TEXT[result.qc.flag]}
            tmp.write_text(table_text(pd.DataFrame([row]), sep=","))
    return written


