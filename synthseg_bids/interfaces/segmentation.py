"""Segment one scan: a thin Nipype wrapper over :class:`synthseg_bids.inference.Segmenter`.

The model is loaded once per process, model choice and settings (the inference layer's caches,
through :meth:`~synthseg_bids.inference.model_choice.ModelChoice.load`), so a Linear run, or a MultiProc
worker, over many scans does not reload it for every node. TensorFlow is imported only when a node actually runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
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


def get_segmenter(model: dict | None = None, device: str = "auto", threads: int = 0, settings: dict | None = None):
    """The process-wide segmenter for a model choice and these settings.

    ``model`` is a :class:`~synthseg_bids.inference.model_choice.ModelChoice` as a dict
    (:meth:`~synthseg_bids.core.settings.Settings.to_dict`; ``None``: the shipped model); the
    segmenter comes from the process-wide caches (:meth:`ModelChoice.load
    <synthseg_bids.inference.model_choice.ModelChoice.load>` with ``shared=True``: keyed by the
    network files, their mtimes and the settings), so nodes run in one process share one loaded model.
    """
    from ..inference import InferenceSettings, ModelChoice

    fields = {**dict(settings or {}), "device": device, "threads": int(threads) if threads else None}
    choice = ModelChoice.from_dict(model) if model is not None else ModelChoice()
    return choice.load(InferenceSettings.from_dict(fields), shared=True)


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
    model = traits.Dict(traits.Str, traits.Any, desc="the model choice, ModelChoice.to_dict(): a model file (.npz, "
                        "or a SynthSeg Keras .h5 segmentation network), or a folder of SynthSeg's .h5 networks "
                        "($FREESURFER_HOME/models) with v1, robust, parcellation, network_qc; absolute paths (a file "
                        "is hashed as a Nipype input); default: the model shipped with the package")
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
        segmenter = get_segmenter(self.inputs.model if isdefined(self.inputs.model) else None, self.inputs.device,
                                  self.inputs.tf_threads, self.inputs.settings if isdefined(self.inputs.settings) else None)
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
