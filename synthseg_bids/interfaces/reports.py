"""Visual reports: a per-scan overlay figure and the per-subject HTML page.

- :class:`SegmentationFigure` draws three orthogonal slices of the scan with the label
  map overlaid in FreeSurfer's colours (PNG, matplotlib's Agg backend, no display).
- :func:`write_subject_report` (and the :class:`SubjectReport` interface) assembles
  ``<output_dir>/sub-<label>.html`` from what is on disk in the derivatives folder:
  the figures, the volumes/QC tables and the citation boilerplate
  (``synthseg_bids/data/boilerplate.md``), so a report also covers scans finished by
  an earlier run.
"""

from __future__ import annotations

import html
import re
import os
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..core.io import atomic_path, atomic_write_text, load_image, load_label_map
from ..core.labels import default_label_table
from .bids import DESC_PREFIX

__all__ = ["SegmentationFigure", "SubjectReport", "plot_segmentation", "write_subject_report"]

_DATA = Path(__file__).resolve().parents[1] / "data"


def _lut_rgba() -> np.ndarray:
    lut = np.zeros((max(s.value for s in default_label_table()) + 1, 4), np.float32)
    for s in default_label_table():
        if s.value:
            lut[s.value, :3] = np.asarray(s.color) / 255.0
            lut[s.value, 3] = 0.55
    return lut


def plot_segmentation(anat_file, dseg_file, out_file, title: str = "") -> Path:
    """Save a PNG of three orthogonal slices (through the label map's centre of mass)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    anat = load_image(anat_file)
    dseg = load_label_map(dseg_file)
    data = anat.data
    lo, hi = np.percentile(data, [1, 99.5]) if data.size else (0, 1)
    if hi <= lo:
        hi = lo + 1
    labels = np.clip(dseg.data, 0, None)
    lut = _lut_rgba()
    labels = np.where(labels < lut.shape[0], labels, 0)
    fg = np.argwhere(labels > 0)
    centre = fg.mean(0).round().astype(int) if fg.size else np.array(data.shape) // 2
    zooms = anat.zooms
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4), facecolor="black")
    views = [(0, "sagittal", (1, 2)), (1, "coronal", (0, 2)), (2, "axial", (0, 1))]
    for ax, (axis, view, (a, b)) in zip(axes, views):
        index = [slice(None)] * 3
        index[axis] = int(np.clip(centre[axis], 0, data.shape[axis] - 1))
        img = np.take(data, index[axis], axis=axis).T
        lab = np.take(labels, index[axis], axis=axis).T
        aspect = zooms[b] / zooms[a]
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspect, interpolation="nearest")
        ax.imshow(lut[lab], origin="lower", aspect=aspect, interpolation="nearest")
        ax.set_title(view, color="white", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, color="white", fontsize=9)
    fig.tight_layout()
    out_file = Path(out_file)
    with atomic_path(out_file) as tmp:
        fig.savefig(tmp, format="png", dpi=80, facecolor="black")
    plt.close(fig)
    return out_file


class _SegmentationFigureInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="the scan that was segmented")
    in_dseg = File(exists=True, mandatory=True, desc="its label map (same grid)")
    title = traits.Str("", usedefault=True, desc="figure title")


class _SegmentationFigureOutputSpec(TraitedSpec):
    out_figure = File(exists=True, desc="PNG figure of the label map over the scan")


class SegmentationFigure(SimpleInterface):
    """Three orthogonal slices of a scan with its segmentation overlaid (PNG)."""

    input_spec = _SegmentationFigureInputSpec
    output_spec = _SegmentationFigureOutputSpec

    def _run_interface(self, runtime):
        out = plot_segmentation(self.inputs.in_file, self.inputs.in_dseg, Path(runtime.cwd) / "figure.png",
                                self.inputs.title)
        self._results["out_figure"] = str(out)
        return runtime


def boilerplate(versions: dict[str, str]) -> str:
    """Citation boilerplate (plain text) with the software versions filled in."""
    text = (_DATA / "boilerplate.md").read_text()
    names = {m.group(1) for m in re.finditer(r"\$\{(\w+)\}", text)}
    return Template(text).safe_substitute({**{n: "unknown" for n in names}, **versions})


def _read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False)


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
        Names substituted in the boilerplate (``version``, ``python``, ``tensorflow``...).
    errors : list of str, optional
        Failures of this run to list at the top of the report.
    """
    output_dir = Path(output_dir)
    sub_dir = output_dir / f"sub-{subject}"
    template = Template((_DATA / "report.html").read_text())
    sections = []
    for tsv in sorted(sub_dir.rglob(f"*_desc-{DESC_PREFIX}*_volumes.tsv")):
        stem = tsv.name[: -len("_volumes.tsv")]
        table = _read_tsv(tsv)
        row = table.iloc[0]
        figure = sub_dir / "figures" / f"{stem}_dseg.png"
        flag = str(row.get("qc_flag", "False")).lower() in ("true", "1")
        qc_cols = [c for c in table.columns if c.startswith("qc_") and c != "qc_flag"]
        vol_cols = [c for c in table.columns if c not in ("participant_id", "session_id", "source", "contrast")
                    and not c.startswith("qc_")]
        qc_html = "".join(f"<tr><td>{html.escape(c[3:])}</td><td>{_fmt(row[c])}</td></tr>" for c in qc_cols)
        vol_html = "".join(f"<tr><td>{html.escape(c)}</td><td>{_fmt(row[c])}</td></tr>" for c in vol_cols)
        fig_html = (
            f'<img class="figure" alt="segmentation of {html.escape(str(row["source"]))}" '
            f'src="{html.escape(figure.relative_to(output_dir).as_posix())}">'
            if figure.exists() else "<p class='warn'>figure missing</p>"
        )
        sections.append(
            f'<section id="{html.escape(stem)}"><h2>{html.escape(str(row["source"]))}</h2>'
            f'<p class="{"warn" if flag else "ok"}">QC: {"FLAGGED, check this segmentation" if flag else "passed"}</p>'
            f"{fig_html}<details open><summary>QC scores</summary><table>{qc_html}</table></details>"
            f"<details><summary>Volumes (mm&sup3;)</summary><table>{vol_html}</table></details></section>"
        )
    error_html = "".join(f"<li>{html.escape(e)}</li>" for e in (errors or []))
    versions = dict(versions or {})
    text = template.safe_substitute(
        subject=html.escape(subject),
        sections="\n".join(sections) or "<p>No segmentation found for this subject.</p>",
        errors=f'<section class="errors"><h2>Errors</h2><ul>{error_html}</ul></section>' if error_html else "",
        boilerplate=html.escape(boilerplate(versions)),
        version=html.escape(versions.get("version", "")),
    )
    return atomic_write_text(output_dir / f"sub-{subject}.html", text)


def _fmt(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    return "n/a" if not np.isfinite(number) else f"{number:.6g}"


class _SubjectReportInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(exists=True, mandatory=True, desc="derivatives folder")
    subject = traits.Str(mandatory=True, desc="subject label without sub-")
    versions = traits.Dict(traits.Str, traits.Str, desc="versions for the boilerplate")
    wait_for = traits.List(traits.Any, desc="any outputs to wait for before writing (ordering only)")


class _SubjectReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="sub-<label>.html")


class SubjectReport(SimpleInterface):
    """Write a subject's HTML report from its derivatives (see :func:`write_subject_report`)."""

    input_spec = _SubjectReportInputSpec
    output_spec = _SubjectReportOutputSpec

    def _run_interface(self, runtime):
        out = write_subject_report(self.inputs.output_dir, self.inputs.subject,
                                   versions=dict(self.inputs.versions or {}))
        self._results["out_report"] = str(out)
        return runtime


