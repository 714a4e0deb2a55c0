"""Segment one scan: a thin Nipype wrapper over :class:`synthseg_bids.inference.Segmenter`.

The model is loaded once per process, model file and settings (the inference layer's
:func:`~synthseg_bids.inference.cached_segmenter`), so a Linear run, or a MultiProc
worker, over many scans does not reload it for every node. TensorFlow is imported only when a node actually runs.
"""

from __future__ import annotations

import hashlib
import json
import os
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

__all__ = ["SynthSeg", "file_sha256", "get_segmenter", "qc_to_dict"]

def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def get_segmenter(model: str | os.PathLike | None = None, device: str = "auto", threads: int = 0,
                  settings: dict | None = None):
    """The process-wide :class:`~synthseg_bids.inference.Segmenter` for these settings.

    Delegates to :func:`synthseg_bids.inference.cached_segmenter` (keyed by model file,
    its mtime and the settings), so nodes run in one process share one loaded model.
    """
    from ..inference import InferenceSettings, cached_segmenter

    fields = {**dict(settings or {}), "device": device, "threads": int(threads) if threads else None}
    return cached_segmenter(model, InferenceSettings.from_dict(fields))


def qc_to_dict(qc: QualityControl) -> dict[str, Any]:
    """A :class:`~synthseg_bids.inference.QualityControl` as plain JSON-ready values."""
    return {
        "scores": {str(k): float(v) for k, v in qc.scores.items()},
        "flag": bool(qc.flag),
        "flagged": [str(name) for name in qc.flagged],
        "thresholds": {str(k): float(v) for k, v in qc.thresholds.items()},
    }


class _SynthSegInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="scan to segment (any contrast, any resolution)")
    model = File(exists=True, desc="model file (.npz); default: the model shipped with the package")
    device = traits.Enum("auto", "cpu", "gpu", usedefault=True, desc="where to run the network")
    tf_threads = traits.Int(0, usedefault=True, desc="CPU threads for the network (0: TensorFlow's default)")
    write_posteriors = traits.Bool(False, usedefault=True, desc="also write the 4D posterior probabilities")
    settings = traits.Dict(traits.Str, traits.Any, desc="InferenceSettings fields (device/tf_threads override)")


class _SynthSegOutputSpec(TraitedSpec):
    out_dseg = File(exists=True, desc="label map on the input grid (FreeSurfer values)")
    out_probseg = File(desc="4D posteriors, one volume per structure in label-table order")
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
        segmenter = get_segmenter(model, self.inputs.device, self.inputs.tf_threads,
                                  self.inputs.settings if isdefined(self.inputs.settings) else None)
        result = segmenter.segment(self.inputs.in_file, posteriors=bool(self.inputs.write_posteriors))
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
        }
        out = cwd / f"{stem}_results.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        self._results["out_results"] = str(out)
        return runtime
