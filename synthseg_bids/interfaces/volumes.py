"""Nipype interfaces of the volumes/QC tables (the tables themselves: :mod:`synthseg_bids.bids.tables`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..bids.tables import (
    OUTLIER_FORMATS,
    SUMMARY_FORMATS,
    gather_volumes,
    group_summary,
    scan_row,
    write_volumes_tsv,
)
from ..core.io import atomic_write_text, write_table

__all__ = ["GroupVolumes", "VolumesTable"]


class _VolumesTableInputSpec(BaseInterfaceInputSpec):
    in_results = File(exists=True, mandatory=True, desc="JSON written by the SynthSeg interface")
    source_file = File(exists=False, mandatory=True, desc="BIDS source scan (gives participant, session, contrast)")


class _VolumesTableOutputSpec(TraitedSpec):
    out_tsv = File(exists=True, desc="one-row TSV: ids, QC flag and scores, structure volumes (mm^3)")


class VolumesTable(SimpleInterface):
    """Turn one segmentation's results JSON into a one-row volumes/QC TSV."""

    input_spec = _VolumesTableInputSpec
    output_spec = _VolumesTableOutputSpec

    def _run_interface(self, runtime):
        results = json.loads(Path(self.inputs.in_results).read_text())
        row = scan_row(results, self.inputs.source_file)
        out = Path(runtime.cwd) / "volumes.tsv"
        write_volumes_tsv(pd.DataFrame([row]), out)
        self._results["out_tsv"] = str(out)
        return runtime


class _GroupVolumesInputSpec(BaseInterfaceInputSpec):
    in_tsvs = InputMultiObject(File(exists=True), mandatory=True, desc="per-scan volumes TSVs")
    z_threshold = traits.Float(3.0, usedefault=True, desc="|z| above which a volume is an outlier")


class _GroupVolumesOutputSpec(TraitedSpec):
    out_volumes = File(exists=True, desc="all scans' volumes, one row per scan")
    out_summary = File(exists=True, desc="per contrast and structure: n, mean, std, min, max")
    out_outliers = File(exists=True, desc="scans flagged by QC or by a volume z-score, and incomplete tables")
    out_incomplete = File(exists=True, desc="JSON list of the unusable tables (see gather_volumes)")


class GroupVolumes(SimpleInterface):
    """Gather per-scan volumes tables into one group table, a summary and an outlier list.

    A table that a killed run left incomplete, or a corrupt one, is left out of the group
    table and listed in the outliers (reason ``incomplete_table``) and in ``out_incomplete``.
    """

    input_spec = _GroupVolumesInputSpec
    output_spec = _GroupVolumesOutputSpec

    def _run_interface(self, runtime):
        table, incomplete = gather_volumes(self.inputs.in_tsvs)
        summary, outliers = group_summary(table, self.inputs.z_threshold)
        broken = pd.DataFrame([{**{c: item[c] for c in ("participant_id", "session_id", "source")},
                                "contrast": "n/a", "reason": "incomplete_table", "structure": "n/a"}
                               for item in incomplete], columns=outliers.columns)
        outliers = pd.concat([outliers, broken], ignore_index=True) if incomplete else outliers
        cwd = Path(runtime.cwd)
        self._results["out_incomplete"] = str(atomic_write_text(cwd / "incomplete.json", json.dumps(incomplete)))
        self._results["out_volumes"] = str(write_volumes_tsv(table, cwd / "volumes.tsv"))
        self._results["out_summary"] = str(write_table(cwd / "summary.tsv", summary, formats=SUMMARY_FORMATS))
        self._results["out_outliers"] = str(write_table(cwd / "outliers.tsv", outliers, formats=OUTLIER_FORMATS))
        return runtime
