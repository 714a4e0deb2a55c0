"""SynthSeg's published networks (Keras 2 ``.h5`` files) in the prediction pipeline.

FreeSurfer 7.3 and later install SynthSeg's trained networks in ``$FREESURFER_HOME/models``;
:class:`~synthseg_bids.inference.model_choice.ModelChoice` picks files from such a folder as
FreeSurfer's ``mri_synthseg`` does (and :meth:`ModelChoice.load
<synthseg_bids.inference.model_choice.ModelChoice.load>` builds the segmenter), and
:class:`OfficialSegmenter` runs them:

- the segmentation network (1.0, 2.0, or the robust 2.0 cascade) through the ordinary
  :class:`~synthseg_bids.inference.Segmenter` (same pre-processing, flip augmentation,
  smoothing, clean-up, volumes and labels on the input grid), wrapped as a
  :class:`~synthseg_bids.inference.Network`;
- with a parcellation network, the Desikan-Killiany parcellation of the cortex: the
  parcellation U-Net sees the network's window of the image and the one-hot cortex mask
  (labels 3 and 42) of the segmentation; its posteriors (smoothed like the segmentation's)
  give a parcel to every cortex voxel of the label map, and the parcel volumes, summed
  from its posteriors, are rescaled so that they add up to the cortex volume;
- with a QC network, its 8 group scores in [0, 1]: the segmentation, mapped to SynthSeg's
  QC groups and one-hot encoded, on a 224-voxel cube around it, as ``mri_synthseg`` builds it
  (:func:`~synthseg_bids.network.official.qc_network_input`).

The robust network always runs in "fast" mode (no flip augmentation, brain-only clean-up)
and without smoothing of its posteriors, as in ``mri_synthseg --robust``.

The networks are read by :func:`synthseg_bids.network.official.read_official` (weights by
layer name only; nothing in the file is executed).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from scipy import ndimage

from ..core.io import Image
from ..core.labels import LabelTable
from ..core.resample import resample_posteriors
from ..network.official import QC_CROP_SIZE, qc_network_input
from .look_ahead import LookAhead
from .preprocess import extract_window
from .results import SegmentationResult
from .runtime import Network
from .segmenter import CACHE_SIZE, PreparedJob, Segmenter
from .settings import InferenceSettings

if TYPE_CHECKING:
    from .model_choice import ModelFiles

__all__ = [
    "CORTEX_LABELS",
    "QC_SHAPE",
    "OfficialSegmenter",
    "cached_official_segmenter",
]

#: Segmentation labels whose voxels are parcellated (left and right cerebral cortex).
CORTEX_LABELS = (3, 42)
#: Edge of the cube the QC network sees (voxels of the model's grid; SynthSeg's 224).
QC_SHAPE = QC_CROP_SIZE
#: Standard deviation (voxels) of the smoothing of the parcellation posteriors (SynthSeg's).
PARCELLATION_SIGMA = 0.5


def robust_settings(settings: InferenceSettings) -> InferenceSettings:
    """The settings of ``mri_synthseg --robust``: fast mode and no posterior smoothing."""
    return dataclasses.replace(settings, flip=False, shifts=1, postprocess="brain", smoothing_sigma=0.0)


def _from_segmenter(name: str) -> property:
    """A read-only attribute that :class:`OfficialSegmenter` takes from its segmentation :class:`Segmenter`."""
    return property(lambda self: getattr(self.segmenter, name),
                    doc=f"The segmentation network's :attr:`Segmenter.{name}`.")


class OfficialSegmenter:
    """Segments scans with SynthSeg's published networks, loaded once.

    Parameters
    ----------
    segmentation : path
        1.0, 2.0 or robust 2.0 segmentation network (``.h5``).
    parcellation, qc : path, optional
        Parcellation and QC networks (``synthseg_parc_2.0.h5``, ``synthseg_qc_2.0.h5``).
    settings : InferenceSettings
        As for :class:`~synthseg_bids.inference.Segmenter`; with the robust network,
        flip augmentation, smoothing and full clean-up are switched off
        (:func:`robust_settings`).
    qc_size : int, optional
        Edge of the cube the QC network sees (default :data:`QC_SHAPE`, SynthSeg's 224; the
        network is fully convolutional, smaller cubes serve tests of small images).

    Attributes
    ----------
    segmenter : Segmenter
        The segmentation network's segmenter.
    networks : dict
        Role ('segmentation', 'parcellation', 'qc') ->
        :class:`~synthseg_bids.network.official.OfficialNetwork`.

    Raises
    ------
    synthseg_bids.network.official.OfficialModelError
        A file that is not such a network, or of another kind than its role.
    """

    def __init__(
        self,
        segmentation: str | os.PathLike,
        *,
        parcellation: str | os.PathLike | None = None,
        qc: str | os.PathLike | None = None,
        settings: InferenceSettings | None = None,
        qc_size: int | None = None,
    ):
        from ..network.official import read_official
        from .device import configure_device
        from .precision import policy_scope, resolve_precision

        settings = settings if settings is not None else InferenceSettings()
        device = configure_device(settings.device, settings.threads)
        precision = resolve_precision(settings.precision, device)
        with policy_scope(precision):  # the networks that segment; the QC network's 8 scores stay float32
            seg = read_official(segmentation, expect=("segmentation", "robust"))
            if parcellation is not None:
                parcels = read_official(parcellation, expect="parcellation")
        if seg.kind == "robust":
            settings = robust_settings(settings)
        self.networks: dict[str, Any] = {"segmentation": seg}
        if parcellation is not None:
            self.networks["parcellation"] = parcels
        if qc is not None:
            self.networks["qc"] = read_official(qc, expect="qc")
        self.qc_size = int(qc_size if qc_size is not None else QC_SHAPE)
        network = Network.from_keras(seg.model, seg, path=seg.path, device=device, precision=precision)
        self.segmenter = Segmenter(network, settings)
        self._parcellate = _compiled(self.networks["parcellation"].model) if parcellation is not None else None
        self._score = _compiled(self.networks["qc"].model) if qc is not None else None
        self._ahead = LookAhead()

    # the Segmenter interface used by the command line and the Nipype interface
    settings = _from_segmenter("settings")
    network = _from_segmenter("network")
    label_table = _from_segmenter("label_table")
    model_path = _from_segmenter("model_path")

    @property
    def model_info(self) -> Any:
        """The segmentation network's :class:`~synthseg_bids.network.official.OfficialNetwork`."""
        return self.networks["segmentation"]

    def provenance(self) -> list[dict[str, str]]:
        """Role, kind, description, path and sha256 of every network used."""
        return [
            {"role": role, "kind": n.kind, "description": n.description, "path": str(n.path), "sha256": n.sha256}
            for role, n in self.networks.items()
        ]

    def describe(self) -> str:
        """The segmentation network's file and what every network is."""
        return f"{self.model_path} (" + ", ".join(p["description"] for p in self.provenance()) + ")"

    def model_summary(self) -> dict[str, Any]:
        """File, kind and architecture of the segmentation network, and :meth:`provenance`."""
        official = self.model_info
        return {
            "file": self.model_path.name,
            "kind": official.description,
            "n_levels": int(official.architecture.n_levels),
            "base_features": int(official.architecture.features),
            "n_labels": len(self.label_table),
            "resolution_mm": float(official.resolution_mm),
            "networks": self.provenance(),
        }

    def segment(
        self, scan: str | os.PathLike | Image, *, posteriors: bool = False, resampled: bool = False
    ) -> SegmentationResult:
        """Segment one scan, then parcellate and score it when those networks are loaded.

        Raises
        ------
        ImageError
            As :meth:`Segmenter.segment`.
        """
        ahead = self._ahead.take(scan, (posteriors, resampled))
        if ahead is not None:
            return ahead.result()
        return self._segment_now(scan, posteriors, resampled)

    def segment_ahead(self, scan: str | os.PathLike, *, posteriors: bool = False, resampled: bool = False) -> bool:
        """Start segmenting (and parcellating, scoring) ``scan`` in the background, as :meth:`Segmenter.segment_ahead`."""
        return self._ahead.start(scan, (posteriors, resampled), lambda: self._segment_now(scan, posteriors, resampled))

    def _segment_now(self, scan: str | os.PathLike | Image, posteriors: bool, resampled: bool) -> SegmentationResult:
        job = self.segmenter.prepare(scan, posteriors=posteriors, resampled=resampled)
        result = self.segmenter.segment_prepared(job, posteriors)
        result.networks = tuple(self.provenance())
        if self._parcellate is None and self._score is None:
            return result
        import time

        tic = time.perf_counter()
        if self._parcellate is not None:
            self._add_parcellation(result, job)
        if self._score is not None:
            result.network_qc = self._network_qc(result.labels_conformed.data)
        result.timings["official"] = time.perf_counter() - tic
        result.timings["total"] = result.timings.get("total", 0.0) + result.timings["official"]
        return result

    # -- parcellation ---------------------------------------------------------------
    def _add_parcellation(self, result: SegmentationResult, job: PreparedJob) -> None:
        table = self.networks["parcellation"].label_table
        grids = job.grids
        start, shape = grids.window_start, grids.window_shape
        window_labels = extract_window(result.labels_conformed.data, start, shape)
        cortex = np.isin(window_labels, CORTEX_LABELS)
        post = self._parcellate([job.batch, cortex.astype(np.float32)[None, ..., None]])[0]
        if post.shape != tuple(shape) + (len(table),):
            raise ValueError(f"the parcellation network returned shape {post.shape} for a window of {shape}")
        # one channel at a time: 69 channels of a 1 mm window are ~1.4 GB already
        post[..., 0] = 0.0  # the background is ruled out in cortex voxels (and not used elsewhere)
        if PARCELLATION_SIGMA > 0:
            for k in range(1, post.shape[-1]):
                post[..., k] = ndimage.gaussian_filter(post[..., k], PARCELLATION_SIGMA, mode="nearest")
        inside = grids.inside_window()
        result.parcel_volumes = parcel_volumes(post[inside], cortex[inside], table, self._cortex_volume(result))
        index, _ = resample_posteriors(post, grids.window_affine, result.labels.shape, result.labels.affine)
        labels = result.labels.data.astype(np.int32, copy=True)
        in_cortex = np.isin(labels, CORTEX_LABELS)
        labels[in_cortex] = table.values[index[in_cortex]]
        result.parcellation = Image(labels, result.labels.affine.copy(), result.labels.header, None)
        result.parcellation_table = table

    def _cortex_volume(self, result: SegmentationResult) -> float:
        names = [s.name for s in self.label_table if s.value in CORTEX_LABELS]
        return float(sum(result.volumes[name] for name in names))

    # -- QC ---------------------------------------------------------------------------
    def _network_qc(self, labels: np.ndarray) -> dict[str, float]:
        names = self.networks["qc"].qc_names
        values = self.label_table.values
        groups = qc_network_input(self.label_table.index_of(labels), values, size=self.qc_size)
        scores = np.asarray(self._score(groups), dtype=np.float64).reshape(-1)
        if scores.size != len(names):
            raise ValueError(f"the QC network returned {scores.size} scores; expected {len(names)}")
        return {name: float(np.round(np.clip(s, 0.0, 1.0), 4)) for name, s in zip(names, scores)}


def parcel_volumes(
    posteriors: np.ndarray, cortex: np.ndarray, table: LabelTable, cortex_volume: float
) -> dict[str, float]:
    """Parcel volumes (mm^3) from the parcellation posteriors, scaled to ``cortex_volume``.

    Outside the cortex mask the background channel counts as 1, inside it as 0, and the
    posteriors are renormalised (as SynthSeg does); each parcel's summed posterior is then
    its share of the cortex volume. ``posteriors[..., 0]`` is not used; the sums are taken
    over the whole volume at once without copying the posteriors.
    """
    parcels = posteriors[..., 1:]
    denominator = (~cortex) + parcels.sum(axis=-1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(denominator > 0, 1.0 / denominator, 0.0)
    sums = np.einsum("xyzk,xyz->k", parcels, weight, dtype=np.float64)
    total = sums.sum()
    shares = sums / total if total > 0 else np.zeros_like(sums)
    return {name: float(v) for name, v in zip(table.names[1:], shares * cortex_volume)}


def _compiled(model: Any) -> Callable[[Any], np.ndarray]:
    """``model`` on a numpy array or a list of them, compiled once per input shape
    (TensorFlow or JAX); returns float32 numpy."""
    import keras

    def as_inputs(batch: Any) -> Any:
        if isinstance(batch, (list, tuple)):
            return [np.asarray(b, np.float32) for b in batch]
        return np.asarray(batch, np.float32)

    if keras.backend.backend() == "jax":
        import jax

        @jax.jit
        def run(trainable, non_trainable, batch):
            outputs, _ = model.stateless_call(trainable, non_trainable, batch, training=False)
            return outputs.astype("float32")

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        return lambda batch: np.array(run(trainable, non_trainable, as_inputs(batch)))
    import tensorflow as tf

    run_tf = tf.function(lambda batch: tf.cast(model(batch, training=False), tf.float32), reduce_retracing=True)
    return lambda batch: run_tf(tf.nest.map_structure(tf.constant, as_inputs(batch))).numpy()


def cached_official_segmenter(files: ModelFiles, settings: InferenceSettings | None = None) -> OfficialSegmenter:
    """An :class:`OfficialSegmenter` shared within the process (as
    :func:`~synthseg_bids.inference.cached_segmenter`), keyed by the network files (those of
    :meth:`ModelChoice.files <synthseg_bids.inference.model_choice.ModelChoice.files>`), their
    modification times and the settings. At most
    :data:`~synthseg_bids.inference.segmenter.CACHE_SIZE` are kept (the reasons are
    :func:`~synthseg_bids.inference.cached_segmenter`'s, and an official segmenter holds up
    to three networks).
    """
    settings = settings if settings is not None else InferenceSettings()
    paths = [None if p is None else Path(p).resolve() for p in (files.segmentation, files.parcellation, files.qc)]
    files_key = tuple((str(p), p.stat().st_mtime_ns if p.exists() else None) if p else None for p in paths)
    return _cached_official(files_key, settings)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _cached_official(files_key: tuple, settings: InferenceSettings) -> OfficialSegmenter:
    """The segmenter of :func:`cached_official_segmenter`'s key: (path, mtime) of the
    segmentation, parcellation and QC networks (``None`` when not used), and the settings."""
    segmentation, parcellation, qc = (None if f is None else Path(f[0]) for f in files_key)
    return OfficialSegmenter(segmentation, parcellation=parcellation, qc=qc, settings=settings)

