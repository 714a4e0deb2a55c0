"""The group report: ``<output_dir>/group/report.html``, next to the group tables.

Built from ``group/volumes.tsv`` (one row per scan), the list of incomplete tables, one
scan sidecar (QC thresholds and structure names), the crash files under ``logs/`` (scans
that failed and have no table) and, when the input dataset has one, ``participants.tsv``.
One self-contained page (inline CSS and SVG, no script, nothing fetched from the
network); the scans' thumbnails stay separate files written by the participant level
(``sub-<label>/figures/*_desc-synthsegthumb<contrast>_dseg.png``), loaded lazily.

Sections: flagged scans (QC flag, volume outliers, incomplete tables, failed scans; each
linked to its subject report section), structure volumes (% of total intracranial
volume, one distribution row per structure and contrast, outliers marked and named),
QC scores against their thresholds, volumes against age (only with an ``age`` column),
and the thumbnail grid.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..bids import derivative_path
from ..bids.tables import ID_COLUMNS, NETWORK_QC_PREFIX
from ..core.io import atomic_write_text
from .charts import distribution_row, scatter
from .figures import THUMBNAIL_VARIANT
from .render import number, render
from .subject import GROUP_REPORT, scan_id

__all__ = ["AGE_STRUCTURES", "write_group_report"]

_TIV = "total_intracranial"
#: Left + right structures plotted against age (percent of total intracranial volume).
AGE_STRUCTURES = {"cerebral white matter": "cerebral_white_matter", "cerebral cortex": "cerebral_cortex",
                  "lateral ventricles": "lateral_ventricle", "hippocampus": "hippocampus"}
_SUBJECT_REPORT = "../{participant}.html#{anchor}"
_MAX_NAMED = 12


def _names_and_thresholds(sidecar: Path | None) -> tuple[dict[str, str], dict[str, float]]:
    """Column -> LongName, and the QC thresholds, from one scan's volumes sidecar."""
    if sidecar is None:
        return {}, {}
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        return {}, {}
    names = {k: v["LongName"] for k, v in data.items() if isinstance(v, dict) and "LongName" in v}
    return names, {k: float(v) for k, v in ((data.get("QC") or {}).get("thresholds") or {}).items()}


def _paired(columns: list[str]) -> list[str]:
    """Columns with each ``right_*`` moved right after its ``left_*``."""
    ordered = []
    for column in columns:
        if column.startswith("right_") and "left_" + column[6:] in columns:
            continue
        ordered.append(column)
        if column.startswith("left_") and "right_" + column[5:] in columns:
            ordered.append("right_" + column[5:])
    return ordered


def _link(row) -> str:
    return _SUBJECT_REPORT.format(participant=row["participant_id"], anchor=scan_id(str(row["source"])))


def _session(row) -> str:
    """The scan's ``ses-<label>``, or ``""`` without sessions (``n/a`` in the table, read as missing)."""
    session = row["session_id"]
    return "" if pd.isna(session) or session == "n/a" else str(session)


def _label(row, contrast: bool = True) -> str:
    parts = (str(row["participant_id"]), _session(row), str(row["contrast"]) if contrast else "")
    return " ".join(p for p in parts if p)


def _structure_rows(table: pd.DataFrame, columns: list[str], names: dict, z_threshold: float):
    """Distribution rows (percent of TIV; TIV in cm^3) per contrast, and ``{row index: [outlier texts]}``."""
    sections, outliers = [], {}
    for contrast, part in table.groupby("contrast", sort=True):
        tiv = pd.to_numeric(part[_TIV], errors="coerce") if _TIV in part else None
        rows = []
        for column in columns:
            values = pd.to_numeric(part[column], errors="coerce")
            relative = column != _TIV and tiv is not None
            shown = values / tiv * 100 if relative else values / 1000
            std = shown.std(ddof=1)
            z = (shown - shown.mean()) / std if np.isfinite(std) and std > 0 else shown * np.nan
            far = z.index[np.abs(z) > z_threshold]
            marked = [{"value": float(shown[i]), "label": f"{_label(part.loc[i])}: {shown[i]:.3g} (z {z[i]:+.1f})",
                       "href": _link(part.loc[i]), "name": _label(part.loc[i], contrast=False)} for i in far]
            for i in far:
                outliers.setdefault(i, []).append(f"{names.get(column, column)} (z {z[i]:+.1f})")
            chart = distribution_row(shown, marked)
            rows.append({"name": names.get(column, column), "column": column, "chart": chart,
                         "unit": "% of TIV" if relative else "cm³",
                         "ends": (number(chart["low"]), number(chart["high"])) if not chart["empty"] else ("", ""),
                         "marked": marked[:_MAX_NAMED], "more": max(len(marked) - _MAX_NAMED, 0)})
        sections.append({"contrast": contrast, "n": len(part), "rows": rows})
    return sections, outliers


def _qc_rows(table: pd.DataFrame, columns: list[str], names: dict, thresholds: dict) -> list[dict]:
    """Distribution rows of the QC scores; scans below a threshold are marked."""
    by_length = sorted(thresholds, key=len, reverse=True)
    rows = []
    for column in columns:
        name = names.get(column, column.removeprefix("qc_").replace("_", " "))
        kind = next((k for k in by_length if name.endswith(k)), None)
        limit = thresholds.get(kind) if kind and not column.startswith(NETWORK_QC_PREFIX) else None
        values = pd.to_numeric(table[column], errors="coerce")
        below = values.index[values < limit] if limit is not None else []
        marked = [{"value": float(values[i]), "label": f"{_label(table.loc[i])}: {values[i]:.3f}",
                   "href": _link(table.loc[i]), "name": _label(table.loc[i])} for i in below]
        rows.append({"name": name, "column": column, "threshold": limit,
                     "chart": distribution_row(values, marked, threshold=limit),
                     "marked": marked[:_MAX_NAMED], "more": max(len(marked) - _MAX_NAMED, 0)})
    return rows


def _failed_scans(output_dir: Path, done: set[str]) -> list[dict]:
    """Scans with crash files under ``logs/<run>/<scan>/`` and no complete table (the newest crash each)."""
    crashes: dict[str, Path] = {}
    for crash in (output_dir / "logs").glob("*/sub-*/crash-*"):
        stem = crash.parent.name
        if stem not in done and (stem not in crashes or crash.stat().st_mtime > crashes[stem].stat().st_mtime):
            crashes[stem] = crash
    return [{"participant_id": stem.split("_")[0], "label": stem, "reasons": ["failed"],
             "href": _SUBJECT_REPORT.format(participant=stem.split("_")[0], anchor=f"failed-{stem}"),
             "crash": Path("..", crash.relative_to(output_dir)).as_posix()} for stem, crash in sorted(crashes.items())]


def _flagged(table: pd.DataFrame, outliers: dict, incomplete: list[dict], failed: list[dict]) -> list[dict]:
    """Rows of the flagged-scans table, in participant order."""
    rows = []
    for i, row in table.iterrows():
        reasons = (["QC flag"] if str(row.get("qc_flag", "")).lower() == "true" else []) + \
            [f"outlier: {text}" for text in outliers.get(i, [])]
        if reasons:
            rows.append({"participant_id": row["participant_id"], "label": str(row["source"]), "reasons": reasons,
                         "href": _link(row), "crash": None})
    for item in incomplete:
        rows.append({"participant_id": item["participant_id"], "label": item["source"], "crash": None,
                     "reasons": [f"incomplete table: {item['problem']}"],
                     "href": f"../{item['participant_id']}.html" if item["participant_id"] != "n/a" else None})
    return sorted(rows + failed, key=lambda r: (r["participant_id"], r["label"]))


def _thumbnails(table: pd.DataFrame, output_dir: Path) -> list[dict]:
    """One grid entry per scan: its thumbnail (path from the report, or None when missing)."""
    group_dir = output_dir / "group"
    items = []
    for _, row in table.iterrows():
        session = f"/{_session(row)}" if _session(row) else ""
        source = f"/{row['participant_id']}{session}/anat/{row['source']}"
        try:
            path = derivative_path(source, output_dir, "dseg", ".png", datatype="figures", variant=THUMBNAIL_VARIANT)
        except ValueError:  # not a BIDS name
            path = None
        items.append({"label": _label(row), "href": _link(row), "flag": str(row.get("qc_flag", "")).lower(),
                      "src": os.path.relpath(path, group_dir) if path is not None and path.is_file() else None})
    return items


def _age_plots(table: pd.DataFrame, participants: pd.DataFrame | None) -> dict | None:
    """Volume against age scatter plots, coloured by sex when given; None without an ``age`` column."""
    if participants is None or "age" not in participants.columns or "participant_id" not in participants.columns:
        return None
    info = participants.drop_duplicates("participant_id").set_index("participant_id")
    age = pd.to_numeric(table["participant_id"].map(info["age"]), errors="coerce")
    if not age.notna().any():
        return None
    sex = table["participant_id"].map(info["sex"]).fillna("n/a").astype(str) if "sex" in info.columns else None
    groups = sorted(sex.unique()) if sex is not None else []
    classes = [f"g{groups.index(s)}" if s in groups else "g0" for s in sex] if sex is not None else ["g0"] * len(table)
    labels = [_label(r) for _, r in table.iterrows()]
    tiv = pd.to_numeric(table.get(_TIV), errors="coerce") if _TIV in table else None
    plots = []
    if tiv is not None:
        plots.append({"name": "total intracranial volume", "unit": "cm³",
                      "chart": scatter(age, tiv / 1000, labels, classes)})
        for name, stem in AGE_STRUCTURES.items():
            sides = [c for c in (f"left_{stem}", f"right_{stem}") if c in table.columns]
            if sides:
                total = sum(pd.to_numeric(table[c], errors="coerce") for c in sides)
                plots.append({"name": name, "unit": "% of TIV", "chart": scatter(age, total / tiv * 100, labels, classes)})
    return {"plots": plots, "sexes": [{"name": g, "css": f"g{i}"} for i, g in enumerate(groups)]}


def write_group_report(
    output_dir: str | os.PathLike,
    volumes_tsv: str | os.PathLike,
    *,
    tables: list[str] | None = None,
    incomplete: list[dict] | None = None,
    participants_tsv: str | os.PathLike | None = None,
    z_threshold: float = 3.0,
) -> Path:
    """Write ``<output_dir>/group/report.html`` (see the module docstring).

    Parameters
    ----------
    output_dir : path-like
        Derivatives folder of the participant level.
    volumes_tsv : path-like
        The group volumes table (:func:`~synthseg_bids.bids.tables.gather_volumes`).
    tables : list of str, optional
        The per-scan tables; the first sidecar found gives the QC thresholds and names.
    incomplete : list of dict
        Unusable per-scan tables (``gather_volumes``'s second output).
    participants_tsv : path-like, optional
        The input dataset's ``participants.tsv`` (age and sex plots when it has them).
    z_threshold : float
        |z| (within a contrast) above which a structure's share of TIV is an outlier.
    """
    from ..bids.tables import read_volumes_tsv

    output_dir = Path(output_dir)
    table = read_volumes_tsv(volumes_tsv)
    sidecars = (Path(t).with_suffix(".json") for t in tables or ())
    names, thresholds = _names_and_thresholds(next((s for s in sidecars if s.is_file()), None))
    values = [c for c in table.columns if c not in ID_COLUMNS and not c.startswith("qc_") and not c.startswith("ctx_")]
    values = _paired([_TIV, *[c for c in values if c != _TIV]] if _TIV in values else values)
    names.setdefault(_TIV, "total intracranial volume")
    sections, outliers = _structure_rows(table, values, names, z_threshold)
    qc_columns = [c for c in table.columns if c.startswith("qc_") and c != "qc_flag"]
    participants = None
    if participants_tsv is not None and Path(participants_tsv).is_file():
        participants = pd.read_csv(participants_tsv, sep="\t", na_values="n/a", keep_default_na=False)
    failed = _failed_scans(output_dir, {scan_id(s) for s in table["source"]})
    flagged = _flagged(table, outliers, list(incomplete or []), failed)
    page = render(
        "group.html.j2", n_scans=len(table), n_subjects=table["participant_id"].nunique(), sections=sections,
        qc_rows=_qc_rows(table, [c for c in qc_columns if not c.startswith(NETWORK_QC_PREFIX)], names, thresholds),
        network_rows=_qc_rows(table, [c for c in qc_columns if c.startswith(NETWORK_QC_PREFIX)], names, thresholds),
        thresholds=thresholds, flagged=flagged, n_failed=len(failed), n_incomplete=len(incomplete or []),
        thumbnails=_thumbnails(table, output_dir), age=_age_plots(table, participants), z_threshold=z_threshold,
        version=__version__, date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    return atomic_write_text(output_dir / GROUP_REPORT, page)
