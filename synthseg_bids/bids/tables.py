"""Volumes/QC tables (derivatives ``_volumes.tsv`` and ``group/volumes.tsv``): rows, sidecars, reading, summary.

Columns of a volumes table (BIDS-style snake_case names, each described in the JSON
sidecar built by :func:`volumes_sidecar`):

- ``participant_id``, ``session_id``, ``source`` (file name), ``contrast`` (BIDS suffix);
- ``qc_flag``: ``true`` when any QC score is below its threshold, ``false`` otherwise
  (``n/a`` without QC scores);
- ``qc_<score>``: each QC score (``qc_general_white_matter_confidence``, ...), ``%.4f``;
- ``qc_network_<group>``: with SynthSeg's QC network, its 8 group scores, ``%.4f``;
- one column per structure, the FreeSurfer name in snake_case
  (``Left-Cerebral-White-Matter`` -> ``left_cerebral_white_matter``; the sidecar keeps
  the FreeSurfer name as ``LongName``), then ``total_intracranial``; mm^3, ``%.3f``;
- with SynthSeg's parcellation network, one column per Desikan-Killiany parcel
  (``ctx-lh-bankssts`` -> ``ctx_lh_bankssts``), mm^3.

Missing values are ``n/a``.
"""


from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import write_table
from ..core.volumes import FLAG_TEXT, QC_FORMAT, TOTAL_INTRACRANIAL, VOLUME_FORMAT
from .names import parse_entities

__all__ = [
    "FLAG_TEXT",
    "ID_COLUMNS",
    "NETWORK_QC_PREFIX",
    "OUTLIER_FORMATS",
    "SUMMARY_FORMATS",
    "column_name",
    "gather_volumes",
    "group_summary",
    "read_volumes_tsv",
    "scan_row",
    "scan_table_problem",
    "volumes_sidecar",
    "write_volumes_tsv",
]

#: Columns identifying a scan, first in every volumes table.
ID_COLUMNS = ("participant_id", "session_id", "source", "contrast")
#: Column prefix of the scores of SynthSeg's QC network (``qc_network_<group>``).
NETWORK_QC_PREFIX = "qc_network_"

_ID_DESCRIPTIONS = {
    "participant_id": "Participant label (sub-<label>) of the segmented scan.",
    "session_id": "Session label (ses-<label>) of the segmented scan, n/a when the dataset has no sessions.",
    "source": "File name of the segmented scan.",
    "contrast": "BIDS suffix of the segmented scan (T1w, T2w, FLAIR, ...).",
}
_QC_DESCRIPTIONS = {
    "confidence": "Mean, over the voxels labelled as this structure group (left and right together), of the "
    "largest posterior probability; 1 means the network was certain everywhere.",
    "flip dice": "Dice overlap of this structure group between the segmentation of the scan and that of the "
    "left/right-flipped scan (flipped back); a robust segmentation does not depend on the flip.",
}


def column_name(name: str) -> str:
    """BIDS-style snake_case column name of a structure or QC score name.

    >>> [column_name(n) for n in ("Left-Cerebral-White-Matter", "VentralDC", "3rd-Ventricle", "CSF")]
    ['left_cerebral_white_matter', 'ventral_dc', '3rd_ventricle', 'csf']
    >>> column_name("putamen+pallidum flip dice"), column_name("total intracranial")
    ('putamen_pallidum_flip_dice', 'total_intracranial')
    """
    split = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return re.sub(r"[^A-Za-z0-9]+", "_", split).strip("_").lower()


def _columns(names, prefix: str = "") -> dict[str, str]:
    """``{column: original name}``, refusing names that collide once converted."""
    columns: dict[str, str] = {}
    for name in names:
        column = prefix + column_name(name)
        if column in columns:
            raise ValueError(f"{name!r} and {columns[column]!r} both give the column name {column!r}")
        columns[column] = name
    return columns


def scan_row(results: dict, source_file: str) -> dict:
    """One table row: scan identifiers, QC flag and scores, then volumes (mm^3).

    ``results`` is the JSON written by the :class:`~.segmentation.SynthSeg` interface.
    """
    try:
        found = parse_entities(source_file)
    except ValueError:  # not a BIDS name (scan given directly to the workflow)
        found = {}
    contrast = found.get("suffix", "n/a")
    qc = results.get("qc") or {}
    scores = qc.get("scores") or {}
    row = {
        "participant_id": f"sub-{found['subject']}" if "subject" in found else "n/a",
        "session_id": f"ses-{found['session']}" if "session" in found else "n/a",
        "source": Path(source_file).name,
        "contrast": contrast,
        "qc_flag": FLAG_TEXT[bool(qc.get("flag"))] if scores else np.nan,
    }
    row.update({column: float(scores[name]) for column, name in _columns(scores, "qc_").items()})
    network_qc = results.get("network_qc") or {}
    row.update({column: float(network_qc[name]) for column, name in _columns(network_qc, NETWORK_QC_PREFIX).items()})
    volumes = {**(results.get("volumes") or {}), **(results.get("parcel_volumes") or {})}
    row.update({column: float(volumes[name]) for column, name in _columns(volumes).items()})
    return row


def _formats(columns) -> dict[str, str]:
    return {c: QC_FORMAT if c.startswith("qc_") else VOLUME_FORMAT
            for c in columns if c not in ID_COLUMNS and c != "qc_flag"}


def write_volumes_tsv(table: pd.DataFrame, path) -> Path:
    """Write a volumes table (per scan or group): ``n/a`` for missing, one number format per column."""
    table = table.copy()
    if "qc_flag" in table.columns:
        table["qc_flag"] = [v if isinstance(v, str) else FLAG_TEXT[bool(v)] if pd.notna(v) else np.nan
                            for v in table["qc_flag"]]
    return write_table(path, table, formats=_formats(table.columns))


def read_volumes_tsv(path) -> pd.DataFrame:
    """Read a volumes table: ``n/a`` as missing, identifiers and ``qc_flag`` kept as text."""
    text_columns = {c: str for c in (*ID_COLUMNS, "qc_flag")}
    return pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False, dtype=text_columns)


def volumes_sidecar(results: dict) -> dict[str, dict]:
    """BIDS column descriptions of the volumes table of ``results`` (keys: column names).

    The FreeSurfer name of each structure is its ``LongName``; QC score descriptions
    give the threshold below which the scan is flagged.
    """
    qc = results.get("qc") or {}
    thresholds = qc.get("thresholds") or {}
    values = {r["name"]: int(r["value"]) for r in results.get("label_table") or []}
    sidecar = {c: {"Description": d} for c, d in _ID_DESCRIPTIONS.items()}
    if qc.get("scores"):
        sidecar["qc_flag"] = {
            "LongName": "automated QC flag",
            "Description": "Whether any QC score (qc_* columns) is below its threshold; a flagged segmentation "
            "should be checked visually before its volumes are used.",
            "Levels": {"true": "at least one QC score is below its threshold",
                       "false": "every QC score is at or above its threshold"},
        }
    for column, name in _columns(qc.get("scores") or {}, "qc_").items():
        kind = next((k for k in sorted(thresholds, key=len, reverse=True) if name.endswith(k)), None)
        text = _QC_DESCRIPTIONS.get(kind, "Automated QC score of the segmentation, between 0 and 1.")
        if kind is not None:
            text += f" The scan is flagged when this score is below {thresholds[kind]:.2f}."
        sidecar[column] = {"LongName": name, "Description": text, "Units": "arbitrary"}
    for column, name in _columns(results.get("network_qc") or {}, NETWORK_QC_PREFIX).items():
        sidecar[column] = {"LongName": f"{name} (QC network)", "Units": "arbitrary",
                           "Description": f"Score of SynthSeg's QC network for the {name} group, between 0 and 1 "
                           "(higher: a better segmentation of that group)."}
    parcels = results.get("parcel_volumes") or {}
    for column, name in _columns(parcels).items():
        sidecar[column] = {"LongName": name, "Units": "mm^3",
                           "Description": f"Volume of the Desikan-Killiany parcel {name}: its share of the "
                           "parcellation network's posteriors within the cortex, times the cortex volume."}
    for column, name in _columns(results.get("volumes") or {}).items():
        if name == TOTAL_INTRACRANIAL:
            sidecar[column] = {"LongName": "total intracranial volume", "Units": "mm^3",
                               "Description": "Sum of the volumes of every non-background structure (CSF "
                               "included), within the scan's field of view."}
            continue
        label = f" (FreeSurfer label {values[name]})" if name in values else ""
        sidecar[column] = {"LongName": name, "Units": "mm^3",
                           "Description": f"Volume of {name}{label}: the sum of its posterior probability over "
                           "the voxels times the voxel volume, within the scan's field of view."}
    return sidecar


#: Number formats of the group summary and outlier tables (volumes in mm^3, z-scores).
SUMMARY_FORMATS = {"n": "%d", "mean": VOLUME_FORMAT, "std": VOLUME_FORMAT, "min": VOLUME_FORMAT, "max": VOLUME_FORMAT}
OUTLIER_FORMATS = {"value": VOLUME_FORMAT, "z": "%.2f"}


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
        flagged = table[table["qc_flag"] == FLAG_TEXT[True]]
        for idx in flagged.index:
            outliers.append({**{c: table.at[idx, c] for c in ID_COLUMNS}, "reason": "qc_flag",
                             "structure": "n/a", "value": np.nan, "z": np.nan})
    columns = [*ID_COLUMNS, "reason", "structure", "value", "z"]
    return pd.DataFrame(rows), pd.DataFrame(outliers, columns=columns)


def scan_table_problem(path) -> str | None:
    """Why the per-scan volumes table ``path`` is unusable (a killed run, a corrupt file), or ``None``.

    A complete table is UTF-8 text with a header holding :data:`ID_COLUMNS` and exactly one
    data row with as many fields as the header.
    """
    try:
        lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        return f"cannot be read ({err.__class__.__name__})"
    if not lines:
        return "is empty"
    header = lines[0].split("\t")
    missing = [c for c in ID_COLUMNS if c not in header]
    if missing:
        return f"has no {', '.join(missing)} column"
    if len(lines) != 2:
        return f"has {len(lines) - 1} data rows instead of 1"
    fields = len(lines[1].split("\t"))
    if fields != len(header):
        return f"has {fields} fields in its row for {len(header)} columns (truncated)"
    return None


def gather_volumes(paths) -> tuple[pd.DataFrame, list[dict]]:
    """The group table of the per-scan tables ``paths``, and the incomplete ones.

    Returns
    -------
    table : DataFrame
        One row per complete table, sorted by participant, session and file name.
    incomplete : list of dict
        ``{"participant_id", "session_id", "source", "file", "problem"}`` for each table
        that :func:`scan_table_problem` refuses (identifiers from its file name).
    """
    frames, incomplete = [], []
    for path in paths:
        problem = scan_table_problem(path)
        if problem is None:
            frames.append(read_volumes_tsv(path))
            continue
        try:
            found = parse_entities(path)
        except ValueError:
            found = {}
        incomplete.append({
            "participant_id": f"sub-{found['subject']}" if "subject" in found else "n/a",
            "session_id": f"ses-{found['session']}" if "session" in found else "n/a",
            "source": Path(path).name, "file": str(path), "problem": problem,
        })
    if not frames:
        return pd.DataFrame(columns=list(ID_COLUMNS)), incomplete
    table = pd.concat(frames, ignore_index=True).sort_values(["participant_id", "session_id", "source"])
    return table.reset_index(drop=True), incomplete
