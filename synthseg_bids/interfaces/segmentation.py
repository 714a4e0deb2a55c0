"""Segment one scan: a thin Nipype wrapper over :class:`synthseg_bids.inference.Segmenter`.

The model is loaded once per process, model file and settings (the inference layer's
:func:`~synthseg_bids.inference.cached_segmenter`), so a Linear run, or a MultiProc
worker, over many scans does not reload it for every node. TensorFlow is imported only when a node actually runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..core.io import save_image, strip_image_suffix

if TYPE_CHECKING:
    from ..inference import QualityControl

__all__ = ["SynthSeg", "get_segmenter", "qc_to_dict", "run_description"]


def get_segmenter(model: str | os.PathLike | None = None, device: str = "auto", threads: int = 0,
                  settings: dict | None = None, *, model_dir: str | os.PathLike | None = None,
                  official: dict | None = None):
    """The process-wide :class:`~synthseg_bids.inference.Segmenter` for these settings.

    Delegates to :func:`synthseg_bids.inference.cached_segmenter` (keyed by model file,
    its mtime and the settings), so nodes run in one process share one loaded model. With
    ``model_dir`` or a ``.h5`` model, SynthSeg's published networks are used instead
    (:func:`synthseg_bids.inference.official.cached_official_segmenter`; ``official``: its
    switches ``v1``, ``robust``, ``parcellation``, ``qc``).
    """
    from ..inference import InferenceSettings, cached_segmenter
    from ..inference.official import cached_official_segmenter, is_official_model

    fields = {**dict(settings or {}), "device": device, "threads": int(threads) if threads else None}
    inference_settings = InferenceSettings.from_dict(fields)
    if model_dir is not None or (model is not None and is_official_model(model)):
        return cached_official_segmenter(model, model_dir=model_dir, settings=inference_settings, **(official or {}))
    return cached_segmenter(model, inference_settings)


def qc_to_dict(qc: QualityControl) -> dict[str, Any]:
    """A :class:`~synthseg_bids.inference.QualityControl` as plain JSON-ready values."""
    return {
        "scores": {str(k): float(v) for k, v in qc.scores.items()},
        "flag": bool(qc.flag),
        "flagged": [str(name) for name in qc.flagged],
        "thresholds": {str(k): float(v) for k, v in qc.thresholds.items()},
    }


def run_description(segmenter) -> dict[str, Any]:
    """What actually ran, for the sidecar and the report's methods text.

    Keras backend and its version, the device the network ran on, every prediction
    setting, and the model's architecture and training length (from its metadata).
    """
    from importlib.metadata import PackageNotFoundError, version

    import keras

    backend = keras.backend.backend()
    try:
        backend_version = version(backend)
    except PackageNotFoundError:
        backend_version = "unknown"
    return {
        "backend": backend,
        "backend_version": backend_version,
        "keras_version": keras.__version__,
        "device": str(segmenter.network.device),
        "precision": str(segmenter.network.precision),
        "settings": segmenter.settings.to_dict(),
        "model": segmenter.model_summary(),
    }


class _SynthSegInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="scan to segment (any contrast, any resolution)")
    model = File(exists=True, desc="model file (.npz, or a SynthSeg Keras .h5 segmentation network); default: the "
                 "model shipped with the package")
    model_dir = Directory(exists=True, desc="folder of SynthSeg's .h5 networks ($FREESURFER_HOME/models); files chosen "
                          "as mri_synthseg does with v1, robust, parcellation, network_qc")
    v1 = traits.Bool(False, usedefault=True, desc="with model_dir: SynthSeg 1.0 (synthseg_1.0.h5)")
    robust = traits.Bool(False, usedefault=True, desc="with model_dir: SynthSeg-robust 2.0 (implies fast settings)")
    parcellation = traits.Bool(False, usedefault=True, desc="with model_dir: Desikan-Killiany cortical parcellation")
    network_qc = traits.Bool(False, usedefault=True, desc="with model_dir: SynthSeg's QC network (8 group scores)")
    device = traits.Enum("auto", "cpu", "gpu", usedefault=True, desc="where to run the network")
    tf_threads = traits.Int(0, usedefault=True, desc="CPU threads for the network (0: TensorFlow's default)")
    write_posteriors = traits.Bool(False, usedefault=True, desc="also write the 4D posterior probabilities")
    settings = traits.Dict(traits.Str, traits.Any, desc="InferenceSettings fields (device/tf_threads override)")
    next_file = traits.Str(nohash=True, desc="scan this process segments next with the same inputs (one node at a "
                           "time, e.g. Linear): segmented in a background thread from the end of this one's network "
                           "work (Segmenter.segment_ahead), while this node writes its files")


class _SynthSegOutputSpec(TraitedSpec):
    out_dseg = File(exists=True, desc="label map on the input grid (FreeSurfer values)")
    out_probseg = File(desc="4D posteriors, one volume per structure in label-table order")
    out_parc_dseg = File(desc="with parcellation: the label map with Desikan-Killiany parcels in the cortex")
    out_results = File(exists=True, desc="JSON: structure volumes (mm^3), QC scores and flag, label table, model")


class SynthSeg(SimpleInterface):
    """Segment a brain MRI scan of any contrast with the SynthSeg-style U-Net.

    Writes ``<name>_dseg.nii.gz``, optionally ``<name>_probseg.nii.gz`` and
    ``<name>_results.json`` in the node's folder; the model is cached per process.
    """

    input_spec = _SynthSegInputSpec
    output_spec = _SynthSegOutputSpec

    def _run_interface(self, runtime):
        model = self.inputs.model if isdefined(self.inputs.model) else None
        model_dir = self.inputs.model_dir if isdefined(self.inputs.model_dir) else None
        switches = {"v1": self.inputs.v1, "robust": self.inputs.robust, "parcellation": self.inputs.parcellation,
                    "qc": self.inputs.network_qc}
        if model_dir is None and any(switches.values()):
            on = ", ".join(name for name, value in switches.items() if value)
            raise ValueError(f"{on}: these switches select networks in a model folder; set model_dir")
        segmenter = get_segmenter(model, self.inputs.device, self.inputs.tf_threads,
                                  self.inputs.settings if isdefined(self.inputs.settings) else None,
                                  model_dir=model_dir, official=switches if model_dir is not None else None)
        result = segmenter.segment(self.inputs.in_file, posteriors=bool(self.inputs.write_posteriors))
        if isdefined(self.inputs.next_file):
            segmenter.segment_ahead(self.inputs.next_file, posteriors=bool(self.inputs.write_posteriors))
        stem = strip_image_suffix(self.inputs.in_file)
        cwd = Path(runtime.cwd)

        labels = result.labels
        dseg = save_image(labels.data, labels.affine, cwd / f"{stem}_dseg.nii.gz", dtype=np.int16,
                          header=labels.header)
        self._results["out_dseg"] = str(dseg)
        if self.inputs.write_posteriors:
            probseg = save_image(result.posteriors, labels.affine, cwd / f"{stem}_probseg.nii.gz", dtype=np.float32)
            self._results["out_probseg"] = str(probseg)

        results = {
            "source": str(Path(self.inputs.in_file).resolve()),
            "volumes": {str(k): float(v) for k, v in result.volumes.items()},
            "qc": qc_to_dict(result.qc),
            "label_table": result.label_table.to_metadata(),
            "model": str(segmenter.model_path) if segmenter.model_path else None,
            "model_resolution_mm": float(segmenter.model_info.resolution_mm),
            "segmentation": run_description(segmenter),
        }
        if result.parcellation is not None:
            parc = result.parcellation
            out_parc = save_image(parc.data, parc.affine, cwd / f"{stem}_parc_dseg.nii.gz", dtype=np.int16,
                                  header=parc.header)
            self._results["out_parc_dseg"] = str(out_parc)
            results["parcel_volumes"] = {str(k): float(v) for k, v in result.parcel_volumes.items()}
            results["parcellation_label_table"] = result.parcellation_table.to_metadata()
        if result.network_qc is not None:
            results["network_qc"] = {str(k): float(v) for k, v in result.network_qc.items()}
        out = cwd / f"{stem}_results.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        self._results["out_results"] = str(out)
        return runtime
