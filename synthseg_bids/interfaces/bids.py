"""Storing results as BIDS derivatives: a niworkflows-style ``DerivativesDataSink`` and the sidecars.

Names and sidecar contents come from the BIDS layer (:mod:`synthseg_bids.bids`: the
naming scheme is documented in :mod:`synthseg_bids.bids.names`); these interfaces only
copy files into place, atomically.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..bids import (
    PARCELLATION_VARIANT,
    derivative_path,
    parcellation_sidecar,
    scan_sidecars,
)
from ..bids.tables import volumes_sidecar
from ..core.io import atomic_path, atomic_write_text, image_suffix, strip_image_suffix

__all__ = ["PARCELLATION_VARIANT", "DerivativesDataSink", "ScanSidecars"]


class _DerivativesDataSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = traits.Directory(mandatory=True, desc="derivatives folder (the BIDS-App's output_dir)")
    source_file = File(exists=False, mandatory=True, desc="BIDS source scan the derivative was computed from")
    in_file = File(exists=True, mandatory=True, desc="file to store under its BIDS derivative name")
    suffix = traits.Str(mandatory=True, desc="BIDS suffix of the derivative (dseg, probseg, volumes)")
    datatype = traits.Str("anat", usedefault=True, desc="folder under the subject (anat, figures)")
    variant = traits.Str("", usedefault=True, desc="desc label part after 'synthseg' ('parc': desc-synthsegparcT1w)")
    meta_dict = traits.Dict(traits.Str, desc="JSON sidecar content (written when given)")
    meta_file = File(exists=True, desc="JSON file merged into the sidecar (before meta_dict)")
    depends_on = traits.List(traits.Any, desc="outputs that must exist before this one is written (ordering only)")


class _DerivativesDataSinkOutputSpec(TraitedSpec):
    out_file = File(desc="the derivative written")
    out_meta = File(desc="its JSON sidecar (when metadata was given)")


class DerivativesDataSink(SimpleInterface):
    """Copy a file to its BIDS derivative name (atomically), with an optional JSON sidecar.

    The extension is taken from ``in_file`` (``.nii.gz``, ``.tsv``, ``.png``...). The
    sidecar is written last, after the data file: a sidecar therefore always describes
    a complete data file (the re-run check relies on this). The node always runs, even
    when its inputs are unchanged in a reused work folder, so a deleted derivative is
    written again.
    """

    input_spec = _DerivativesDataSinkInputSpec
    output_spec = _DerivativesDataSinkOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        in_file = Path(self.inputs.in_file)
        extension = image_suffix(in_file) or "".join(in_file.suffixes[-1:])
        out_file = derivative_path(
            self.inputs.source_file,
            self.inputs.base_directory,
            self.inputs.suffix,
            extension,
            datatype=self.inputs.datatype,
            variant=self.inputs.variant,
        )
        with atomic_path(out_file) as tmp:
            shutil.copyfile(in_file, tmp)
        self._results["out_file"] = str(out_file)
        meta = {}
        if isdefined(self.inputs.meta_file):
            meta.update(json.loads(Path(self.inputs.meta_file).read_text()))
        if isdefined(self.inputs.meta_dict):
            meta.update(self.inputs.meta_dict)
        if meta:
            sidecar = out_file.parent / (strip_image_suffix(out_file).rsplit(".", 1)[0] + ".json")
            atomic_write_text(sidecar, json.dumps(meta, indent=2, sort_keys=False, default=str) + "\n")
            self._results["out_meta"] = str(sidecar)
        return runtime


class _ScanSidecarsInputSpec(BaseInterfaceInputSpec):
    source_file = File(exists=True, mandatory=True, desc="the BIDS scan that was segmented")
    in_results = File(exists=True, mandatory=True, desc="JSON written by the SynthSeg interface")
    metadata = traits.Dict(traits.Str, traits.Any, desc="run provenance: bids_dir, Model, ModelSHA256, Config...")


class _ScanSidecarsOutputSpec(TraitedSpec):
    dseg_meta = traits.Dict(desc="sidecar of the label map")
    parc_dseg_meta = traits.Dict(desc="sidecar of the parcellation label map")
    probseg_meta = traits.Dict(desc="sidecar of the posteriors")
    volumes_meta = traits.Dict(desc="sidecar of the volumes table: provenance checked by re-runs")


class ScanSidecars(SimpleInterface):
    """JSON sidecars of one scan's derivatives (see :func:`synthseg_bids.bids.scan_sidecars`)."""

    input_spec = _ScanSidecarsInputSpec
    output_spec = _ScanSidecarsOutputSpec

    def _run_interface(self, runtime):
        results = json.loads(Path(self.inputs.in_results).read_text())
        metadata = dict(self.inputs.metadata) if isdefined(self.inputs.metadata) else {}
        dseg, probseg, volumes = scan_sidecars(self.inputs.source_file, results, metadata)
        volumes.update(volumes_sidecar(results))  # a BIDS description of each column of the table
        self._results.update(dseg_meta=dseg, parc_dseg_meta=parcellation_sidecar(dseg), probseg_meta=probseg,
                             volumes_meta=volumes)
        return runtime
