"""SynthSeg's published networks (Keras 2 ``.h5`` files) in the prediction pipeline.

FreeSurfer 7.3 and later install SynthSeg's trained networks in ``$FREESURFER_HOME/models``;
:func:`select_model_files` picks files from such a folder as FreeSurfer's ``mri_synthseg``
does, and :class:`OfficialSegmenter` runs them:

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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

__all__ = [
    "CORTEX_LABELS",
    "MODEL_FILES",
    "QC_SHAPE",
    "ModelSelectionError",
    "OfficialModels",
    "OfficialSegmenter",
    "cached_official_segmenter",
    "is_official_model",
    "model_identity",
    "load_segmenter",
    "official_model_files",
    "select_model_files",
]

#: File names in ``$FREESURFER_HOME/models`` (FreeSurfer 7.3) by role.
MODEL_FILES: dict[str, str] = {
    "1.0": "synthseg_1.0.h5",
    "2.0": "synthseg_2.0.h5",
    "robust": "synthseg_robust_2.0.h5",
    "parcellation": "synthseg_parc_2.0.h5",
    "qc": "synthseg_qc_2.0.h5",
}
#: Segmentation labels whose voxels are parcellated (left and right cerebral cortex).
CORTEX_LABELS = (3, 42)
#: Edge of the cube the QC network sees (voxels of the model's grid; SynthSeg's 224).
QC_SHAPE = QC_CROP_SIZE
#: Standard deviation (voxels) of the smoothing of the parcellation posteriors (SynthSeg's).
PARCELLATION_SIGMA = 0.5


class ModelSelectionError(ValueError):
    """Switches that cannot be combined (e.g. ``--v1`` with ``--robust``)."""


@dataclass(frozen=True)
class OfficialModels:
    """The files of one official pipeline.

    Attributes
    ----------
    segmentation : Path
        1.0, 2.0 or robust 2.0 segmentation network.
    parcellation, qc : Path or None
        Parcellation and QC networks, when asked for.
    """

    segmentation: Path
    parcellation: Path | None = None
    qc: Path | None = None


def select_model_files(
    model_dir: str | os.PathLike,
    *,
    v1: bool = False,
    robust: bool = False,
    parcellation: bool = False,
    qc: bool = False,
) -> OfficialModels:
    """The files of ``model_dir`` (laid out like ``$FREESURFER_HOME/models``) that
    ``mri_synthseg`` would use for these switches.

    ``robust`` selects ``synthseg_robust_2.0.h5``, ``v1`` ``synthseg_1.0.h5``, otherwise
    ``synthseg_2.0.h5``; ``parcellation`` and ``qc`` add ``synthseg_parc_2.0.h5`` and
    ``synthseg_qc_2.0.h5``, also with ``v1`` (there are no 1.0 versions of them; as in
    ``mri_synthseg``, they then run on the 1.0 segmentation).

    Raises
    ------
    ModelSelectionError
        ``v1`` with ``robust`` (SynthSeg-robust exists only in version 2.0).
    synthseg_bids.network.ModelFileError
        The folder or a selected file is missing (the message names it).
    """
    from ..network import ModelFileError

    if v1 and robust:
        raise ModelSelectionError(
            "--v1 cannot be used with --robust: SynthSeg-robust only exists in version 2.0 (drop --v1)"
        )
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ModelFileError(folder, "model folder not found (expected a folder like $FREESURFER_HOME/models)")
    roles = ["robust" if robust else "1.0" if v1 else "2.0"]
    if parcellation:
        roles.append("parcellation")
    if qc:
        roles.append("qc")
    paths = {role: folder / MODEL_FILES[role] for role in roles}
    for role, path in paths.items():
        if not path.is_file():
            raise ModelFileError(path, f"not found: the {role} network {MODEL_FILES[role]} is not in {folder}")
    return OfficialModels(paths[roles[0]], paths.get("parcellation"), paths.get("qc"))


def is_official_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is to be read as a Keras 2 ``.h5`` network (by suffix or content)."""
    from ..network.official import is_keras2_h5

    path = Path(path)
    return path.suffix.lower() in (".h5", ".hdf5") or is_keras2_h5(path)


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

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | os.PathLike,
        *,
        v1: bool = False,
        robust: bool = False,
        parcellation: bool = False,
        qc: bool = False,
        settings: InferenceSettings | None = None,
        qc_size: int | None = None,
    ) -> "OfficialSegmenter":
        """The pipeline of ``mri_synthseg`` with these switches (:func:`select_model_files`)."""
        files = select_model_files(model_dir, v1=v1, robust=robust, parcellation=parcellation, qc=qc)
        return cls(files.segmentation, parcellation=files.parcellation, qc=files.qc, settings=settings,
                   qc_size=qc_size)

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


def load_segmenter(
    model: str | os.PathLike | None = None,
    *,
    model_dir: str | os.PathLike | None = None,
    v1: bool = False,
    robust: bool = False,
    parcellation: bool = False,
    qc: bool = False,
    settings: InferenceSettings | None = None,
) -> Segmenter | OfficialSegmenter:
    """The segmenter for a model choice, as the command line and the BIDS-App make it.

    An :class:`OfficialSegmenter` on the files of :func:`official_model_files` (``model_dir``
    with the switches, or a ``.h5`` ``model``); otherwise a
    :class:`~synthseg_bids.inference.Segmenter` (``None``: the shipped model). The switches
    ``v1``, ``robust`` and ``parcellation`` need ``model_dir``; ``qc`` (the QC network) is
    used with ``model_dir`` only (other models have the posterior-based QC of every result).

    Raises
    ------
    ModelSelectionError
        ``model`` with ``model_dir``, a switch without ``model_dir``, ``v1`` with ``robust``.
    """
    files = official_model_files(model, model_dir=model_dir, v1=v1, robust=robust, parcellation=parcellation, qc=qc)
    if files is None:
        return Segmenter(model, settings)
    return OfficialSegmenter(files.segmentation, parcellation=files.parcellation, qc=files.qc, settings=settings)


def official_model_files(
    model: str | os.PathLike | None = None,
    *,
    model_dir: str | os.PathLike | None = None,
    v1: bool = False,
    robust: bool = False,
    parcellation: bool = False,
    qc: bool = False,
) -> OfficialModels | None:
    """The published networks of a model choice, or ``None`` for one of our own model files.

    ``model_dir``: the files the switches select (:func:`select_model_files`); a ``.h5``
    ``model``: that file alone; ``None`` otherwise (``model`` is ours; ``None``: the shipped
    one). ``qc`` counts only with ``model_dir`` (other models have the posterior-based QC).

    Raises
    ------
    ModelSelectionError
        ``model`` with ``model_dir``, ``v1``, ``robust`` or ``parcellation`` without ``model_dir``,
        ``v1`` with ``robust``.
    """
    if model is not None and model_dir is not None:
        raise ModelSelectionError("give either a model file (--model) or a model folder (--model-dir), not both")
    if model_dir is not None:
        return select_model_files(model_dir, v1=v1, robust=robust, parcellation=parcellation, qc=qc)
    switches = [name for name, on in (("--v1", v1), ("--robust", robust), ("--parc", parcellation)) if on]
    if switches:
        raise ModelSelectionError(
            f"{', '.join(switches)} select(s) networks in a model folder: add --model-dir DIR "
            "(a folder like $FREESURFER_HOME/models)"
        )
    return OfficialModels(Path(model)) if model is not None and is_official_model(model) else None


def cached_official_segmenter(
    model: str | os.PathLike | None = None,
    *,
    model_dir: str | os.PathLike | None = None,
    v1: bool = False,
    robust: bool = False,
    parcellation: bool = False,
    qc: bool = False,
    settings: InferenceSettings | None = None,
) -> OfficialSegmenter:
    """An :class:`OfficialSegmenter` shared within the process (as
    :func:`~synthseg_bids.inference.cached_segmenter`), keyed by the resolved network files,
    their modification times and the settings.

    The files are those of :func:`official_model_files`: ``model_dir`` with the switches,
    or a ``.h5`` segmentation network as ``model``. At most
    :data:`~synthseg_bids.inference.segmenter.CACHE_SIZE` are kept (the reasons are
    :func:`~synthseg_bids.inference.cached_segmenter`'s, and an official segmenter holds up
    to three networks).
    """
    settings = settings if settings is not None else InferenceSettings()
    files = official_model_files(model, model_dir=model_dir, v1=v1, robust=robust, parcellation=parcellation, qc=qc)
    if files is None:
        raise ModelSelectionError(f"{model}: not one of SynthSeg's .h5 networks; give one, or a model folder")
    paths = [None if p is None else Path(p).resolve() for p in (files.segmentation, files.parcellation, files.qc)]
    files_key = tuple((str(p), p.stat().st_mtime_ns if p.exists() else None) if p else None for p in paths)
    return _cached_official(files_key, settings)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _cached_official(files_key: tuple, settings: InferenceSettings) -> OfficialSegmenter:
    """The segmenter of :func:`cached_official_segmenter`'s key: (path, mtime) of the
    segmentation, parcellation and QC networks (``None`` when not used), and the settings."""
    segmentation, parcellation, qc = (None if f is None else Path(f[0]) for f in files_key)
    return OfficialSegmenter(segmentation, parcellation=parcellation, qc=qc, settings=settings)


def model_identity(
    model: str | os.PathLike | None,
    *,
    model_dir: str | os.PathLike | None = None,
    v1: bool = False,
    robust: bool = False,
    parcellation: bool = False,
    qc: bool = False,
) -> tuple[LabelTable, str]:
    """The segmentation label table of a model choice and a sha256 that identifies it, without
    building any network (for the BIDS-App's ``dseg.tsv`` and done-checks).

    One file (our ``.npz`` or one ``.h5``): its sha256. With ``model_dir``: the sha256 of the
    lines ``<file name> <sha256>`` of every selected file, so that adding ``parcellation``
    or ``qc`` changes it.

    Raises
    ------
    synthseg_bids.network.ModelFileError
        An unreadable model file, or a selected file missing.
    """
    import hashlib

    from ..core.io import file_sha256

    files = official_model_files(model, model_dir=model_dir, v1=v1, robust=robust, parcellation=parcellation, qc=qc)
    if files is None:
        from ..network import read_model_file

        return read_model_file(model).info.label_table, file_sha256(model)
    from ..network.keras2_h5 import read_weights
    from ..network.official import infer_architecture, official_label_table

    architecture = infer_architecture(read_weights(files.segmentation))
    table = official_label_table(architecture.version)
    paths = [p for p in (files.segmentation, files.parcellation, files.qc) if p is not None]
    if len(paths) == 1:
        return table, file_sha256(paths[0])
    lines = "".join(f"{p.name} {file_sha256(p)}\n" for p in paths)
    return table, hashlib.sha256(lines.encode()).hexdigest()
