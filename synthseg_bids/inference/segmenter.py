"""Segment scans of any contrast, resolution and orientation with a loaded network.

Pipeline of :meth:`Segmenter.segment` (geometry in :mod:`.preprocess`):

1. load and validate the scan (:func:`~synthseg_bids.core.io.load_image`);
2. RAS, model resolution (cubic spline), intensities in [0, 1], window on the head;
3. network on the window, batch 1 (in overlapping patches above ``max_voxels``);
   with ``flip``, also on the left/right-flipped window, flipped back with left/right
   channels swapped, and averaged;
4. Gaussian smoothing of the posteriors, connected-component clean-up
   (:func:`~synthseg_bids.core.postprocess.keep_largest_components`);
5. volumes from the posteriors on the model's grid, QC scores;
6. posteriors resampled trilinearly onto the input grid, argmax there, channel ->
   FreeSurfer label value.

The network is any :class:`Network`: a Keras model file loaded by
:meth:`Network.from_file` (what :class:`Segmenter` does for paths), or a plain callable
(tests, other back-ends) wrapped with :class:`Network` directly.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from scipy import ndimage

from ..core.io import Image, ImageError, atomic_path, load_image, save_image, strip_image_suffix
from ..core.labels import LabelTable
from ..core.postprocess import keep_largest_components
from ..core.resample import resample_posteriors
from ..core.volumes import volumes_from_posteriors
from .memory import check_posteriors_fit
from .preprocess import PreparedScan, extract_window, prepare_scan
from .qc import QualityControl, quality_control
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
    """

    predict: Callable[[np.ndarray], np.ndarray]
    label_table: LabelTable
    resolution_mm: float = 1.0
    size_multiple: int = 16
    path: Path | None = None
    info: Any = None
    device: str = "custom"

    @classmethod
    def from_keras(cls, model: Any, info: Any, *, path: Path | None = None, device: str = "cpu") -> "Network":
        """Wrap a Keras U-Net and its :class:`~synthseg_bids.network.ModelInfo`.

        On TensorFlow the model runs in one ``tf.function`` traced once for every input
        shape. On JAX it runs as a ``jax.jit`` of its stateless call (compiled once for
        every input shape), with its current weights and the inputs placed on
        ``device`` ('cpu' or 'gpu'); later changes to the model's weights are not seen.
        """
        import keras

        if keras.backend.backend() == "jax":
            predict = _jax_predict(model, device)
        else:
            predict = _tensorflow_predict(model)
        return cls(
            predict=predict,
            label_table=info.label_table,
            resolution_mm=float(info.resolution_mm),
            size_multiple=int(info.network.size_multiple),
            path=path,
            info=info,
            device=device,
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, device: str = "auto", threads: int | None = None) -> "Network":
        """Load a model file after choosing the Keras backend's device and threads (:mod:`.device`).

        Raises
        ------
        synthseg_bids.network.ModelFileError
            Missing or invalid model file (the message names it).
        synthseg_bids.inference.device.DeviceError
            ``device='gpu'`` without a GPU, a device change after TensorFlow started, or
            ``threads`` on JAX.
        """
        from ..network import load_model
        from .device import configure_device

        path = Path(path).resolve()
        used = configure_device(device, threads)
        model, info = load_model(path)
        return cls.from_keras(model, info, path=path, device=used)


def _tensorflow_predict(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, None, 1], tf.float32)])
    def run(batch):
        return tf.cast(model(batch, training=False), tf.float32)

    def predict(batch: np.ndarray) -> np.ndarray:
        return run(tf.constant(batch, dtype=tf.float32)).numpy()

    return predict


def _jax_predict(model: Any, device: str) -> Callable[[np.ndarray], np.ndarray]:
    import jax

    target = jax.devices(device)[0]
    trainable = jax.device_put([v.value for v in model.trainable_variables], target)
    non_trainable = jax.device_put([v.value for v in model.non_trainable_variables], target)

    @jax.jit
    def run(trainable, non_trainable, batch):
        outputs, _ = model.stateless_call(trainable, non_trainable, batch, training=False)
        return outputs.astype("float32")

    def predict(batch: np.ndarray) -> np.ndarray:
        # np.array copies: numpy views of JAX arrays are read-only, the segmenter writes in place
        return np.array(run(trainable, non_trainable, jax.device_put(np.asarray(batch, np.float32), target)))

    return predict


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
        Seconds spent in 'load', 'preprocess', 'network', 'postprocess' and 'total'.
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
            self.network = Network.from_file(path, device=self.settings.device, threads=self.settings.threads)

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

    # -- prediction ------------------------------------------------------------
    def predict_window(self, batch: np.ndarray) -> np.ndarray:
        """Posteriors ``(X, Y, Z, K)`` of a network input ``(1, X, Y, Z, 1)``.

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

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = np.asarray(self.network.predict(batch), dtype=np.float32)
        expected = batch.shape[:4] + (len(self.label_table),)
        if out.shape != expected:
            raise ValueError(f"the network returned shape {out.shape} for input {batch.shape}; expected {expected}")
        return out

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
        s = self.settings
        table = self.label_table
        tic = time.perf_counter()
        image = _checked(scan) if isinstance(scan, Image) else load_image(scan)
        if posteriors:
            check_posteriors_fit(image.path, image.shape, len(table))
        timings = {"load": time.perf_counter() - tic}

        tic = time.perf_counter()
        prepared = prepare_scan(image, self.network.resolution_mm, self.network.size_multiple, s)
        batch = prepared.network_input()
        timings["preprocess"] = time.perf_counter() - tic

        tic = time.perf_counter()
        post = self.predict_window(batch)
        unflipped = flipped = None
        if s.flip:
            mirrored = self.predict_window(np.ascontiguousarray(batch[:, ::-1]))[::-1][..., table.flip_permutation]
            unflipped, flipped = np.argmax(post, axis=-1), np.argmax(mirrored, axis=-1)
            post += mirrored
            post *= 0.5
            del mirrored
        timings["network"] = time.perf_counter() - tic

        tic = time.perf_counter()
        if s.smoothing_sigma > 0:
            post = ndimage.gaussian_filter(post, sigma=(s.smoothing_sigma,) * 3 + (0,), mode="nearest")
        if s.postprocess != "none":
            keep_largest_components(
                post, table.groups, threshold=s.posterior_threshold, brain_only=s.postprocess == "brain"
            )
        index = np.argmax(post, axis=-1).astype(np.int32)
        # volumes inside the scan's field of view only (the window may be padded)
        volumes = volumes_from_posteriors(post[prepared.inside_window()], prepared.window_affine, table)
        qc = quality_control(
            post,
            table,
            index=index,
            unflipped_index=unflipped,
            flipped_index=flipped,
            min_confidence=s.qc_min_confidence,
            min_flip_dice=s.qc_min_flip_dice,
        )
        conformed = self._conformed_labels(prepared, table.values[index])
        input_index, input_posteriors = resample_posteriors(
            post, prepared.window_affine, image.shape, image.affine, keep_posteriors=posteriors
        )
        labels = Image(table.values[input_index], image.affine.copy(), image.header, None)
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
            source=image.path,
        )

    @staticmethod
    def _conformed_labels(prepared: PreparedScan, window_labels: np.ndarray) -> Image:
        data = extract_window(window_labels, -prepared.window_start, prepared.conformed.shape)
        return Image(data.astype(np.int32, copy=False), prepared.conformed_affine.copy(), None, None)

    def segment_many(
        self, scans: Iterable[str | os.PathLike | Image], *, posteriors: bool = False
    ) -> Iterator[SegmentationResult]:
        """Segment scans one after the other with the loaded network (a generator).

        A bad scan raises its :class:`~synthseg_bids.core.io.ImageError` when reached;
        the results of earlier scans have been yielded already.
        """
        for scan in scans:
            yield self.segment(scan, posteriors=posteriors)


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
            tmp.write_text(_csv(["scan", *result.volumes], [scan, *(f"{v:.3f}" for v in result.volumes.values())]))
        if qc is not None:
            tmp = temporary("qc", qc)
            scores = result.qc.scores
            tmp.write_text(
                _csv(["scan", *scores, "flag"], [scan, *(f"{v:.4f}" for v in scores.values()), str(result.qc.flag)])
            )
    return written


def _csv(header: list[str], row: list[str]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerows([header, row])
    return text.getvalue()

