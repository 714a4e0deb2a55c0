"""The subject report: ``<output_dir>/sub-<label>.html``, from the derivatives on disk.

:func:`write_subject_report` reads each scan's volumes table and sidecar (QC thresholds,
what ran), its figures and ``dseg.tsv``, so a report also covers scans finished by an
earlier run, and renders ``templates/subject.html.j2``. Sections: a summary (command,
date, version, run, model), navigation between the scans, the errors of failed scans
with their crash files, one section per scan (mosaic with a plain/overlay switch,
legend, QC, volumes) and the methods text with its references.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..bids import DESC_PREFIX
from ..bids.tables import ID_COLUMNS, NETWORK_QC_PREFIX, read_volumes_tsv, scan_table_problem
from ..core.io import atomic_write_text
from .figures import display_colours, figure_labels
from .methods import REFERENCES, closing_text, describe_record, intro_text, model_card
from .render import render

__all__ = [
    "CORTICAL_PARCEL_MIN",
    "GROUP_REPORT",
    "legend_entries",
    "methods_paragraphs",
    "scan_id",
    "write_subject_report",
]

#: FreeSurfer values of cortical parcels start here (``ctx-lh-*`` 1000-1035, ``ctx-rh-*`` 2000-2035).
CORTICAL_PARCEL_MIN = 1000
#: The group report, relative to the derivatives folder.
GROUP_REPORT = "group/report.html"


def scan_id(source: str) -> str:
    """HTML id of a scan's section: its file name without extension (``sub-01_ses-1_T1w``)."""
    return Path(source).name.split(".")[0]


def _dseg_lookup(output_dir: Path) -> pd.DataFrame:
    """``dseg.tsv`` of the derivatives (index, name), or the default table's."""
    from ..core.labels import default_label_table

    path = output_dir / "dseg.tsv"
    if path.is_file():
        return pd.read_csv(path, sep="\t", keep_default_na=False).set_index("index")
    return pd.DataFrame([{"index": s.value, "name": s.name} for s in default_label_table()]).set_index("index")


def _sidecar(tsv: Path) -> dict:
    path = tsv.with_suffix(".json")
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _plain_name(stem: str) -> str:
    """One style for every structure: ``Cerebral-White-Matter`` -> ``Cerebral white matter``."""
    words = stem.replace("-", " ").replace("VentralDC", "Ventral DC").split()
    return " ".join([words[0], *[w if w.isupper() else w.lower() for w in words[1:]]]) if words else stem


def legend_entries(values, lookup: pd.DataFrame) -> list[dict]:
    """Legend of the drawn label values: ``{"name", "sides", "colour", "freesurfer"}`` per structure.

    A structure is named once in plain words, its sides in brackets (``Putamen (left,
    right)``, ``Hippocampus (left)``), with the colour it is drawn in.
    """
    colours = display_colours()
    entries: dict[str, dict] = {}
    for value in values:
        if value not in lookup.index or value not in colours:
            continue
        name = str(lookup.at[value, "name"])
        side, _, stem = name.partition("-")
        sided = side in ("Left", "Right")
        entry = entries.setdefault(stem if sided else name, {
            "name": _plain_name(stem if sided else name), "sides": [], "colour": _hex(colours[value]),
            "freesurfer": []})
        entry["freesurfer"].append(name)
        if sided:
            entry["sides"].append(side.lower())
    return list(entries.values())


def _qc_rows(row: pd.Series, columns: list[str], sidecar: dict) -> tuple[list[str], list[dict], list[str]]:
    """QC table (score kinds, rows of groups with ``cells[kind] = {"text", "css"}``) and the failing scores."""
    thresholds = (sidecar.get("QC") or {}).get("thresholds") or {}
    by_length = sorted(thresholds, key=len, reverse=True)
    kinds: list[str] = []
    groups: dict[str, dict] = {}
    failing = []
    for column in columns:
        name = (sidecar.get(column) or {}).get("LongName", column[3:].replace("_", " "))
        kind = next((k for k in by_length if name.endswith(k)), "score")
        group = name[: len(name) - len(kind)].strip() if kind != "score" else name
        kinds += [kind] if kind not in kinds else []
        value = pd.to_numeric(row[column], errors="coerce")
        if not np.isfinite(value):
            cell = {"text": "n/a (not in the segmentation)", "css": "na"}
        elif kind in thresholds:
            limit = float(thresholds[kind])
            passed = bool(value >= limit)
            cell = {"text": f"{value:.3f} {'≥' if passed else '<'} {limit:.2f}", "css": "pass" if passed else "fail"}
            failing += [] if passed else [f"{group} {kind}"]
        else:
            cell = {"text": f"{value:.3f}", "css": "na"}
        groups.setdefault(group, {"group": group, "cells": {}})["cells"][kind] = cell
    return kinds, list(groups.values()), failing


def _network_qc(row: pd.Series, columns: list[str], sidecar: dict) -> list[dict]:
    rows = []
    for column in columns:
        name = (sidecar.get(column) or {}).get("LongName", column[len(NETWORK_QC_PREFIX):].replace("_", " "))
        value = pd.to_numeric(row[column], errors="coerce")
        rows.append({"group": name.removesuffix(" (QC network)"), "text": f"{value:.3f}" if np.isfinite(value)
                     else "n/a"})
    return rows


def _volume_rows(row: pd.Series, columns: list[str], sidecar: dict, lookup: pd.DataFrame) -> list[dict]:
    colours = display_colours()
    by_name = {str(n): v for v, n in lookup["name"].items()}
    rows = []
    for column in columns:
        name = str((sidecar.get(column) or {}).get("LongName", column))
        value = pd.to_numeric(row[column], errors="coerce")
        label = by_name.get(name)
        rows.append({"name": name, "column": column, "value": f"{value:,.0f}" if np.isfinite(value) else "n/a",
                     "colour": _hex(colours[label]) if label in colours else None})
    return rows


def _scan_section(tsv: Path, output_dir: Path, lookup: pd.DataFrame) -> dict:
    """Template data of one scan's section."""
    stem = tsv.name[: -len("_volumes.tsv")]
    table = read_volumes_tsv(tsv)
    row, sidecar = table.iloc[0], _sidecar(tsv)
    subject_dir = output_dir / str(row["participant_id"])
    network_cols = [c for c in table.columns if c.startswith(NETWORK_QC_PREFIX)]
    qc_cols = [c for c in table.columns if c.startswith("qc_") and c != "qc_flag" and c not in network_cols]
    vol_cols = [c for c in table.columns if c not in ID_COLUMNS and not c.startswith("qc_")]
    kinds, qc_rows, failing = _qc_rows(row, qc_cols, sidecar)
    flag = str(row.get("qc_flag", "n/a")).lower()
    figure = subject_dir / "figures" / f"{stem}_dseg.png"
    figure_data = None
    if figure.is_file():
        from PIL import Image as PILImage

        with PILImage.open(figure) as image:
            width, height = image.size
        figure_data = {"src": figure.relative_to(output_dir).as_posix(), "aspect": f"{width} / {height // 2}",
                       "legend": legend_entries(figure_labels(figure), lookup)}
    thresholds = (sidecar.get("QC") or {}).get("thresholds") or {}
    return {
        "id": scan_id(str(row["source"])), "source": str(row["source"]), "flag": flag, "failing": failing,
        "figure": figure_data, "kinds": kinds, "qc_rows": qc_rows, "thresholds": thresholds,
        "network_qc": _network_qc(row, network_cols, sidecar),
        "volumes": _volume_rows(row, vol_cols, sidecar, lookup), "sidecar": sidecar,
    }


def methods_paragraphs(sidecars: dict[str, dict], versions: dict | None = None,
                       n_structures: int = 32) -> tuple[list[str], dict | None]:
    """The methods text of the scans whose volumes sidecars are given (scan name -> sidecar).

    Returns the paragraphs (the introduction, one per distinct prediction record, with
    the scans' names when they differ, and the closing one) and the model card
    (:func:`~synthseg_bids.reports.methods.model_card`) when the shipped model ran.
    """
    versions = dict(versions or {})
    version = next((s["Version"] for s in sidecars.values() if s.get("Version")),
                   versions.get("version", __version__))
    shas = {s["ModelSHA256"] for s in sidecars.values() if s.get("ModelSHA256")} or (
        {versions["model_sha256"]} if versions.get("model_sha256") else set())
    records: dict[str, list[str]] = {}
    for name, sidecar in sidecars.items():
        record = sidecar.get("Segmentation")
        records.setdefault(json.dumps(record, sort_keys=True) if record else "", []).append(name)
    first = next((json.loads(k) for k in records if k), {})
    card = model_card(next(iter(shas))) if len(shas) == 1 else None
    paragraphs = [intro_text(version, shas, (first.get("model") or {}).get("steps_trained"))]
    for key, names in records.items():
        prefix = f"For {', '.join(sorted(names))}: " if len(records) > 1 else ""
        if not key:
            paragraphs.append(prefix + "The prediction settings of these scans were not recorded (derivatives "
                              "written by an older version).")
            continue
        record = json.loads(key)
        record.setdefault("model", {}).setdefault("n_labels", n_structures + 1)
        paragraphs.append(prefix + describe_record({**record, "describe_network": card is None}))
    thresholds = next(((s.get("QC") or {}).get("thresholds") for s in sidecars.values()
                       if (s.get("QC") or {}).get("thresholds")), None)
    paragraphs.append(closing_text(thresholds, versions))
    return paragraphs, card


def _errors(output_dir: Path, errors: list[str]) -> list[dict]:
    """Failed scans: ``{"id", "scan", "message", "crash"}`` (crash file relative to the report, or None)."""
    found = []
    for error in errors:
        scan, sep, message = error.partition(": ")
        stem = scan_id(scan) if sep else ""
        crashes = sorted((output_dir / "logs").glob(f"*/{stem}/crash-*"), key=lambda p: p.stat().st_mtime) \
            if stem else []
        found.append({"id": f"failed-{stem}" if stem else "", "scan": scan if sep else "",
                      "message": message if sep else error,
                      "crash": crashes[-1].relative_to(output_dir).as_posix() if crashes else None})
    return found


def write_subject_report(
    output_dir: str | os.PathLike,
    subject: str,
    *,
    versions: dict[str, str] | None = None,
    errors: list[str] | None = None,
) -> Path:
    """Write ``<output_dir>/sub-<subject>.html`` from the subject's derivatives.

    Parameters
    ----------
    output_dir : path-like
        Derivatives folder.
    subject : str
        Label without ``sub-``.
    versions : dict, optional
        ``version``, ``nipype``, ``pybids``, ``model_sha256``, ``command`` and ``run_uuid``
        of this run, for the summary and the methods text (what ran for each scan comes
        from its sidecar).
    errors : list of str
        Failures of this run (``"<scan file>: <message>"``), listed with their crash files.
    """
    output_dir = Path(output_dir)
    versions = dict(versions or {})
    lookup = _dseg_lookup(output_dir)
    tsvs = sorted((output_dir / f"sub-{subject}").rglob(f"*_desc-{DESC_PREFIX}*_volumes.tsv"))
    problems = {tsv: scan_table_problem(tsv) for tsv in tsvs}
    scans = [_scan_section(tsv, output_dir, lookup) for tsv in tsvs if problems[tsv] is None]
    errors = [*(errors or []), *(f"{tsv.relative_to(output_dir).as_posix()}: incomplete volumes table, {problem} "
                                 "(segment the scan again)" for tsv, problem in problems.items() if problem)]
    sidecars = {scan["source"]: scan["sidecar"] for scan in scans}
    n_parcels = int((lookup.index >= CORTICAL_PARCEL_MIN).sum())  # Desikan-Killiany rows (with --parc)
    n_structures = int((lookup.index != 0).sum()) - n_parcels
    paragraphs, card = methods_paragraphs(sidecars, versions, n_structures)
    runs = sorted({(s.get("Config") or {}).get("run_uuid") for s in sidecars.values()} - {None, ""})
    summary = {
        "command": versions.get("command"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "version": versions.get("version") or __version__,
        "runs": sorted({*runs, *([versions["run_uuid"]] if versions.get("run_uuid") else [])}),
        "model_sha256": sorted({s["ModelSHA256"] for s in sidecars.values() if s.get("ModelSHA256")}
                               or ({versions["model_sha256"]} if versions.get("model_sha256") else set())),
    }
    page = render("subject.html.j2", subject=subject, scans=scans, errors=_errors(output_dir, list(errors or [])),
                  summary=summary, methods=paragraphs, card=card, n_structures=n_structures, n_parcels=n_parcels,
                  parcel_min=CORTICAL_PARCEL_MIN, references=[text for _, text in REFERENCES],
                  group_report=GROUP_REPORT)
    return atomic_write_text(output_dir / f"sub-{subject}.html", page)
