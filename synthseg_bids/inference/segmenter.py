"""Segment scans of any contrast, resolution and orientation with a loaded network.

Pipeline of :meth:`Segmenter.segment` (geometry in :mod:`.preprocess`):

1. load and validate the scan (:func:`~synthseg_bids.core.io.load_image`);
2. RAS, model resolution (cubic spline), intensities in [0, 1], window on the head;
3. network on the window, batch 1 (in overlapping patches above ``max_voxels``);
   with ``flip``, also on the left/right-flipped window. A U-Net of
   :func:`~synthseg_bids.network.build_unet` on TensorFlow runs its full-resolution decoder
   level in y slabs with a halo (:mod:`synthseg_bids.network.unet_slabs`: the same output, without that level's
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

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..core.io import Image, ImageError, file_sha256, load_image
from ..core.labels import LabelTable
from ..core.postprocess import largest_components
from ..core.resample import copy_to_grid, grids_align, resample_posteriors
from ..core.volumes import volumes_from_posterior_sums
from .ensemble import shift_ensemble
from .look_ahead import LookAhead
from .memory import check_posteriors_fit
from .prediction import Backend, CombinedPosteriors, DevicePosteriors
from .preprocess import ScanGrids, extract_window, prepare_scan
from .qc import quality_control_from_counts
from .results import SegmentationResult
from .runtime import Network, default_model_path
from .settings import InferenceSettings
from .windows import sliding_window_inference

__all__ = ["CACHE_SIZE", "PreparedJob", "Segmenter", "cached_segmenter"]


@dataclass
class PreparedJob:
    """A scan read and pre-processed, waiting for the network: its network input and grids
    (and, when asked for, the scan as the network sees it; :meth:`Segmenter.prepare`)."""

    grids: ScanGrids
    batch: np.ndarray
    timings: dict[str, float]
    resampled: Image | None = None


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
        self._provenance: tuple[dict[str, str], ...] | None = None

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
        s = self.settings
        return sliding_window_inference(batch, self._run, max_voxels=s.max_voxels, window_size=s.patch_size,
                                        overlap=s.patch_overlap, size_multiple=self.network.size_multiple)

    def predict_window(self, batch: np.ndarray) -> CombinedPosteriors:
        """The network on an input ``(1, X, Y, Z, 1)`` (and on its flip), then the device steps.

        Returns the averaged, smoothed posteriors (left on the device) and the masks of the
        connected-component clean-up (:meth:`.DevicePosteriors.combine`).
        """
        # passed on directly, not kept here: the combining step releases each pass once used
        if not self.settings.flip:
            return self.device_posteriors.combine(self._ensemble_pass(batch))
        flipped = np.ascontiguousarray(batch[:, ::-1])
        slabs = self.network.slabs
        if slabs is None or self.settings.shifts > 1 or int(np.prod(batch.shape[1:4])) > self.settings.max_voxels:
            return self.device_posteriors.combine(self._ensemble_pass(batch), self._ensemble_pass(flipped))
        # the flipped pass in y slabs, each averaged with the first pass as it comes: no second
        # full-size pass, nor full-size temporaries of the averaging, exist next to the first
        return self.device_posteriors.combine(self._network_pass(batch), self._checked_slabs(slabs(flipped), flipped))

    def _ensemble_pass(self, batch: np.ndarray) -> Any:
        """Mean ``(1, X, Y, Z, K)`` posteriors of the window and its shifted copies
        (``settings.shifts``; :func:`~.ensemble.shift_ensemble`)."""
        return shift_ensemble(batch, self.settings.shifts, self.network.size_multiple, self._network_pass,
                              slabs=self.network.slabs, max_voxels=self.settings.max_voxels,
                              patched=self.network_posteriors, channels=len(self.label_table))

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
    def segment(
        self, scan: str | os.PathLike | Image, *, posteriors: bool = False, resampled: bool = False
    ) -> SegmentationResult:
        """Segment one scan (file or :class:`~synthseg_bids.core.io.Image`).

        Parameters
        ----------
        scan
            3D NIfTI/MGZ file (a 4D file with one volume is accepted) or an Image.
        posteriors
            Also return the posteriors on the input grid (memory: 4 bytes x K per voxel).
        resampled
            Also return the scan as the network saw it (``result.resampled``).

        Raises
        ------
        ImageError
            Unreadable, not 3D, non-finite or constant (e.g. all-zero) scan; or ``posteriors``
            asked for a scan whose posteriors cannot fit in memory
            (:func:`~synthseg_bids.inference.memory.check_posteriors_fit`). Names the file.
        """
        ahead = self._ahead.take(scan, (posteriors, resampled))
        if ahead is not None:
            return ahead.result()
        return self._segment_now(scan, posteriors, resampled)

    def segment_ahead(self, scan: str | os.PathLike, *, posteriors: bool = False, resampled: bool = False) -> bool:
        """Start segmenting the file ``scan`` in a background thread, for the next :meth:`segment` call.

        For one process segmenting scans in a known order with other work between them
        (see :mod:`.look_ahead`): call it right after a scan's result, so that the next
        scan is read and run through the network while this one is written. Returns
        whether it started (``False`` for a missing file). Errors are raised by the
        :meth:`segment` call that takes the result.
        """
        return self._ahead.start(scan, (posteriors, resampled), lambda: self._segment_now(scan, posteriors, resampled))

    def _segment_now(self, scan: str | os.PathLike | Image, posteriors: bool, resampled: bool) -> SegmentationResult:
        result = self.segment_prepared(self.prepare(scan, posteriors=posteriors, resampled=resampled), posteriors)
        result.networks = tuple(self.provenance())
        return result

    def prepare(self, scan: str | os.PathLike | Image, *, posteriors: bool = False,
                resampled: bool = False) -> PreparedJob:
        """Steps 1-2: read, check and pre-process (no network); :meth:`segment_prepared` goes on."""
        tic = time.perf_counter()
        image = _checked(scan) if isinstance(scan, Image) else load_image(scan)
        if posteriors:
            check_posteriors_fit(image.path, image.shape, len(self.label_table))
        timings = {"load": time.perf_counter() - tic}
        tic = time.perf_counter()
        prepared = prepare_scan(image, self.network.resolution_mm, self.network.size_multiple, self.settings)
        conformed = Image(prepared.conformed, prepared.conformed_affine, None, None) if resampled else None
        # the scan and (unless asked for) its conformed copy are let go here: only the window goes on
        job = PreparedJob(prepared.grids, prepared.network_input(), timings, conformed)
        timings["preprocess"] = time.perf_counter() - tic
        return job

    def segment_prepared(self, job: PreparedJob, posteriors: bool = False) -> SegmentationResult:
        """Steps 3-7 on a scan of :meth:`prepare` (``posteriors``: as for :meth:`segment`)."""
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
            resampled=job.resampled,
        )

    @staticmethod
    def _conformed_labels(grids: ScanGrids, window_labels: np.ndarray) -> Image:
        data = extract_window(window_labels, -grids.window_start, grids.conformed_shape)
        return Image(data.astype(np.int32, copy=False), grids.conformed_affine.copy(), None, None)

    # -- what was loaded -----------------------------------------------------------
    def provenance(self) -> list[dict[str, str]]:
        """The model file: role 'segmentation', kind 'synthseg-bids', description, path and
        sha256 (computed once); empty for a network that is not a file."""
        if self._provenance is None:
            path = self.model_path
            self._provenance = () if path is None else ({
                "role": "segmentation", "kind": "synthseg-bids",
                "description": f"synthseg-bids U-Net ({len(self.label_table)} labels)",
                "path": str(path), "sha256": file_sha256(path),
            },)
        return [dict(entry) for entry in self._provenance]

    def describe(self) -> str:
        """The model file."""
        return str(self.model_path)

    def model_summary(self) -> dict[str, Any]:
        """File, package version, architecture, labels, resolution, training length and validation
        of the model file (from its metadata)."""
        info = self.model_info
        return {
            "file": self.model_path.name if self.model_path else None,
            "package_version": info.package_version,
            "n_levels": int(info.network.n_levels),
            "base_features": int(info.network.base_features),
            "n_labels": len(info.label_table),
            "resolution_mm": float(info.resolution_mm),
            "steps_trained": (info.provenance or {}).get("steps_trained"),
            "validation": info.validation,
        }


def _checked(image: Image) -> Image:
    """The in-memory scan, or :class:`ImageError` if it is not a finite 3D array."""
    name = image.path if image.path is not None else "<array>"
    if image.data.ndim != 3:
        raise ImageError(name, f"is {image.data.ndim}D with shape {image.data.shape}; expected a 3D volume")
    if not np.all(np.isfinite(image.data)):
        raise ImageError(name, "contains NaN or infinite voxel(s)")
    return image


#: Segmenters :func:`cached_segmenter` keeps (least recently used dropped first).
CACHE_SIZE = 2


def cached_segmenter(
    model: str | os.PathLike | None = None, settings: InferenceSettings | None = None
) -> Segmenter:
    """A :class:`Segmenter` shared within the process, keyed by resolved model path,
    its modification time and the settings (a rewritten model file is reloaded).

    At most :data:`CACHE_SIZE` (2) segmenters are kept, the least recently used dropped
    first. A process needs one: the ``segment`` command and every node of a BIDS-App run
    segment all scans with one model and one set of settings, and a Nipype worker process
    runs the nodes of one run. Each one kept holds its network's weights and compiled
    functions (measured on the CPU: 29 MiB of resident memory for a second segmenter of the
    shipped model, 70 MiB for the first with Keras' start-up, before the graphs traced for
    each input shape) and a scan segmented ahead of it, if any
    (:meth:`Segmenter.segment_ahead`), so an unbounded cache grows by that for every model
    file version or setting ever used in a long process (a notebook, a test session). The
    second place lets a process alternate between two choices (e.g. the default and
    ``fast`` settings) without reloading.
    """
    settings = settings if settings is not None else InferenceSettings()
    path = (Path(model) if model is not None else default_model_path()).resolve()
    return _cached(str(path), path.stat().st_mtime_ns if path.exists() else None, settings, model is None)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _cached(path: str, mtime_ns: int | None, settings: InferenceSettings, default: bool) -> Segmenter:
    """The segmenter of :func:`cached_segmenter`'s key (``default``: the shipped model)."""
    return Segmenter(None if default else Path(path), settings)
