"""Volumes/QC tables: one row per scan, and the group table with its summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..core.io import atomic_write_text
from .bids import parse_bids_name

__all__ = ["GroupVolumes", "VolumesTable", "group_summary", "scan_row", "write_tsv"]

#: Columns identifying a scan, first in every volumes table.
ID_COLUMNS = ("participant_id", "session_id", "source", "contrast")


def write_tsv(table: pd.DataFrame, path) -> Path:
    """Write a BIDS TSV (``n/a`` for missing values) atomically."""
    return atomic_write_text(path, table.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.6g"))


def scan_row(results: dict, source_file: str) -> dict:
    """One table row: scan identifiers, QC flag and scores, then volumes (mm^3)."""
    try:
        entities, contrast = parse_bids_name(source_file)
    except ValueError:  # not a BIDS name (scan given directly to the workflow)
        entities, contrast = [], "n/a"
    found = dict(entities)
    row = {
        "participant_id": f"sub-{found['sub']}" if "sub" in found else "n/a",
        "session_id": f"ses-{found['ses']}" if "ses" in found else "n/a",
        "source": Path(source_file).name,
        "contrast": contrast,
        "qc_flag": bool(results.get("qc", {}).get("flag", False)),
    }
    row.update({f"qc_{k}": v for k, v in results.get("qc", {}).get("scores", {}).items()})
    row.update(results.get("volumes", {}))
    return row


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
        write_tsv(pd.DataFrame([row]), out)
        self._results["out_tsv"] = str(out)
        return runtime


def group_summary(table: pd.DataFrame, z_threshold: float = 3.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-structure statistics and outliers of a group volumes table.

    Returns
    -------
    summary : DataFrame
        One row per (contrast, structure): ``n``, ``mean``, ``std`` (ddof=1), ``min``, ``max``.
    outliers : DataFrame
        One row per flagged (scan, reason): QC flag set, or a volume whose z-score
        within its contrast is beyond ``z_threshold`` (``structure``, ``value``, ``z``).
    """
    value_cols = [c for c in table.columns if c not in ID_COLUMNS and not c.startswith("qc_")]
    rows, outliers = [], []
    for contrast, part in table.groupby("contrast", sort=True):
        for col in value_cols:
            values = pd.to_numeric(part[col], errors="coerce")
            mean, std = values.mean(), values.std(ddof=1)
            rows.append({"contrast": contrast, "structure": col, "n": int(values.count()), "mean": mean,
                         "std": std, "min": values.min(), "max": values.max()})
            if np.isfinite(std) and std > 0:
                z = (values - mean) / std
                for idx in z.index[np.abs(z) > z_threshold]:
                    outliers.append({**{c: part.at[idx, c] for c in ID_COLUMNS}, "reason": "volume_zscore",
                                     "structure": col, "value": values[idx], "z": z[idx]})
    if "qc_flag" in table.columns:
        flagged = table[table["qc_flag"].astype(str).str.lower().isin(["true", "1"])]
        for idx in flagged.index:
            outliers.append({**{c: table.at[idx, c] for c in ID_COLUMNS}, "reason": "qc_flag",
                             "structure": "n/a", "value": np.nan, "z": np.nan})
    columns = [*ID_COLUMNS, "reason", "structure", "value", "z"]
    return pd.DataFrame(rows), pd.DataFrame(outliers, columns=columns)


class _GroupVolumesInputSpec(BaseInterfaceInputSpec):
    in_tsvs = InputMultiObject(File(exists=True), mandatory=True, desc="per-scan volumes TSVs")
    z_threshold = traits.Float(3.0, usedefault=True, desc="|z| above which a volume is an outlier")


class _GroupVolumesOutputSpec(TraitedSpec):
    out_volumes = File(exists=True, desc="all scans' volumes, one row per scan")
    out_summary = File(exists=True, desc="per contrast and structure: n, mean, std, min, max")
    out_outliers = File(exists=True, desc="scans flagged by QC or by a volume z-score")


class GroupVolumes(SimpleInterface):
    """Gather per-scan volumes tables into one group table, a summary and an outlier list."""

    input_spec = _GroupVolumesInputSpec
    output_spec = _GroupVolumesOutputSpec

    def _run_interface(self, runtime):
        frames = [pd.read_csv(f, sep="\t", na_values="n/a", keep_default_na=False) for f in self.inputs.in_tsvs]
        table = pd.concat(frames, ignore_index=True).sort_values(["participant_id", "session_id", "source"])
        summary, outliers = group_summary(table.reset_index(drop=True), self.inputs.z_threshold)
        cwd = Path(runtime.cwd)
        self._results["out_volumes"] = str(write_tsv(table, cwd / "volumes.tsv"))
        self._results["out_summary"] = str(write_tsv(summary, cwd / "summary.tsv"))
        self._results["out_outliers"] = str(write_tsv(outliers, cwd / "outliers.tsv"))
        return runtime
