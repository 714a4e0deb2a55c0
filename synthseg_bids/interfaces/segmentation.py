"""Segment one scan: a thin Nipype wrapper over :class:`synthseg_bids.inference.Segmenter`.

The model is loaded once per process, model file and settings (the inference layer's
:func:`~synthseg_bids.inference.cached_segmenter`), so a Linear run, or a MultiProc
worker, over many scans does not reload it for every node. TensorFlow is imported only when a node actually runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

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


def qc_to_dict(qc: Any) -> dict[str, Any]:
    """QC result as ``{"scores": {name: float}, "flag": bool, ...}`` whatever its type."""
    if qc is None:
        return {"scores": {}, "flag": False}
    if dataclasses.is_dataclass(qc):
        data = dataclasses.asdict(qc)
    elif isinstance(qc, dict):
        data = dict(qc)
    elif hasattr(qc, "_asdict"):
        data = qc._asdict()
    else:
        data = {k: v for k, v in vars(qc).items() if not k.startswith("_")}
    scores = data.pop("scores", None)
    if scores is None:
        scores = {k: v for k, v in data.items() if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)}
        data = {k: v for k, v in data.items() if k not in scores}
    flag = data.pop("flag") if "flag" in data else bool(data.get("flagged") or data.get("failed"))
    out = {"scores": {str(k): float(v) for k, v in dict(scores).items()}, "flag": bool(flag)}
    out.update({k: _plain(v) for k, v in data.items()})
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


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
        header = getattr(labels, "header", None)
        dseg = save_image(np.asarray(labels.data), labels.affine, cwd / f"{stem}_dseg.nii.gz", dtype=np.int16,
                          header=header)
        self._results["out_dseg"] = str(dseg)

        posteriors = getattr(result, "posteriors", None)
        if self.inputs.write_posteriors and posteriors is not None:
            data = getattr(posteriors, "data", posteriors)
            probseg = save_image(np.asarray(data, dtype=np.float32), labels.affine, cwd / f"{stem}_probseg.nii.gz")
            self._results["out_probseg"] = str(probseg)

        table = getattr(result, "label_table", None) or getattr(segmenter, "label_table", None)
        info = getattr(segmenter, "model_info", None) or getattr(segmenter, "info", None)
        model_path = getattr(segmenter, "model_path", None) or model
        results = {
            "source": str(Path(self.inputs.in_file).resolve()),
            "volumes": {str(k): float(v) for k, v in dict(result.volumes).items()},
            "qc": qc_to_dict(getattr(result, "qc", None)),
            "label_table": table.to_metadata() if table is not None else None,
            "model": str(model_path) if model_path else None,
            "model_resolution_mm": _plain(getattr(info, "resolution_mm", None)),
        }
        out = cwd / f"{stem}_results.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        self._results["out_results"] = str(out)
        return runtime
