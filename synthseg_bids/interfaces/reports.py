"""Visual reports: a per-scan overlay figure and the per-subject HTML page.

- :class:`SegmentationFigure` draws three orthogonal slices of the scan (reoriented to
  RAS, so that the views are really sagittal, coronal and axial) with the label map
  overlaid in FreeSurfer's LUT colours (:meth:`~synthseg_bids.core.labels.LabelTable.colour_lut`).
  The PNG is rendered at twice the size it is shown at in the report (crisp on
  high-density screens, no up-scaling), and records the label values it shows (PNG
  text ``Labels``), from which the report draws the colour legend.
- :func:`write_subject_report` (and the :class:`SubjectReport` interface) assembles
  ``<output_dir>/sub-<label>.html`` from what is on disk in the derivatives folder: the
  figures, the volumes tables and their sidecars (QC thresholds, what ran), ``dseg.tsv``
  (names and colours), so a report also covers scans finished by an earlier run.
- :func:`methods_text` writes the methods paragraph from what actually ran (the
  ``Segmentation`` record of each scan's sidecar: Keras backend and device, prediction
  settings, model), as sMRIPrep's workflow descriptions do; the references are
  ``synthseg_bids/data/boilerplate.md``.
"""

from __future__ import annotations

import html
import json
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

from .. import __version__
from ..bids import DESC_PREFIX
from ..core.io import Image, atomic_path, atomic_write_text, load_image, load_label_map
from ..core.labels import SYNTHSEG_STRUCTURES, LabelTable, default_label_table
from .volumes import ID_COLUMNS, NETWORK_QC_PREFIX, read_volumes_tsv

__all__ = [
    "SegmentationFigure",
    "SubjectReport",
    "figure_labels",
    "methods_text",
    "model_card",
    "plot_segmentation",
    "write_subject_report",
]

_DATA = Path(__file__).resolve().parents[1] / "data"
#: Width (CSS pixels) at which the report shows a figure; the PNG has twice as many pixels.
FIGURE_WIDTH_PX = 960
_FIGURE_DPI = 160
_FIGURE_SIZE_IN = (2 * FIGURE_WIDTH_PX / _FIGURE_DPI, 2 * 340 / _FIGURE_DPI)
_KNOWN_VALUES = {s.value for s in SYNTHSEG_STRUCTURES}


def _canonical(image: Image, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data`` on ``image``'s grid reoriented to the closest RAS axes: (array, voxel sizes)."""
    import nibabel as nib

    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, image.affine))
    return np.asanyarray(canonical.dataobj), np.asarray(canonical.header.get_zooms()[:3], dtype=float)


def plot_segmentation(anat_file, dseg_file, out_file, title: str = "") -> Path:
    """Save a PNG of three orthogonal slices (through the label map's centre of mass).

    Views in RAS orientation, neurological convention (the subject's left on the left
    of the coronal and axial views). The label values drawn are stored as the PNG text
    field ``Labels`` (see :func:`figure_labels`).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    anat = load_image(anat_file)
    dseg = load_label_map(dseg_file)
    data, zooms = _canonical(anat, anat.data)
    labels, _ = _canonical(dseg, np.clip(dseg.data, 0, None).astype(np.int32))
    lo, hi = np.percentile(data, [1, 99.5]) if data.size else (0, 1)
    if hi <= lo:
        hi = lo + 1
    present = sorted(int(v) for v in np.unique(labels) if v in _KNOWN_VALUES)
    lut = LabelTable.from_values([0, *[v for v in present if v]]).colour_lut(alpha=0.6)
    labels = np.where(labels < lut.shape[0], labels, 0)
    fg = np.argwhere(labels > 0)
    centre = fg.mean(0).round().astype(int) if fg.size else np.array(data.shape) // 2

    fig, axes = plt.subplots(1, 3, figsize=_FIGURE_SIZE_IN, facecolor="black")
    views = [(0, "sagittal", (1, 2), ("P", "A")), (1, "coronal", (0, 2), ("L", "R")), (2, "axial", (0, 1), ("L", "R"))]
    shown: set[int] = set()
    for ax, (axis, view, (a, b), (left, right)) in zip(axes, views):
        index = int(np.clip(centre[axis], 0, data.shape[axis] - 1))
        img = np.take(data, index, axis=axis).T
        lab = np.take(labels, index, axis=axis).T
        shown.update(int(v) for v in np.unique(lab) if v)
        aspect = zooms[b] / zooms[a]
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspect, interpolation="nearest")
        ax.imshow(lut[lab], origin="lower", aspect=aspect, interpolation="nearest")
        ax.set_title(view, color="white", fontsize=13)
        for x, text in ((0.02, left), (0.98, right)):
            ax.text(x, 0.5, text, color="white", fontsize=12, transform=ax.transAxes,
                    ha="left" if x < 0.5 else "right", va="center")
        ax.axis("off")
    if title:
        fig.suptitle(title, color="white", fontsize=13)
    fig.tight_layout()
    out_file = Path(out_file)
    with atomic_path(out_file) as tmp:
        fig.savefig(tmp, format="png", dpi=_FIGURE_DPI, facecolor="black",
                    metadata={"Labels": " ".join(str(v) for v in sorted(shown))})
    plt.close(fig)
    return out_file


def figure_labels(png: str | os.PathLike) -> list[int]:
    """Label values drawn in a figure of :func:`plot_segmentation` (empty for other PNGs)."""
    from PIL import Image as PILImage

    with PILImage.open(png) as image:
        text = getattr(image, "text", {}).get("Labels", "")
    return [int(v) for v in text.split()]


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


# -- methods text ------------------------------------------------------------------

def model_card(sha256: str | None) -> dict | None:
    """Description and measured accuracy of the shipped model, when ``sha256`` is its hash.

    ``synthseg_bids/data/default_model_card.json`` holds the figures of the README's
    "The shipped model" section for that exact file; any other model has no card.
    """
    card = json.loads((_DATA / "default_model_card.json").read_text())
    return card if sha256 and sha256 == card["sha256"] else None


_POSTPROCESS = {
    "full": "each structure group was reduced to its largest connected component",
    "brain": "only the largest connected component of the whole brain was kept",
    "none": "no connected-component clean-up was applied",
}
_BACKENDS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


def _named(name: str, version: str | None) -> str:
    """``"Nipype 1.10.0"``, or just the name when the version is unknown."""
    return f"{name} {version}" if version and version != "unknown" else name


def _describe_run(record: dict, n_labels: int, *, describe_network: bool = True) -> str:
    """Sentences for one prediction configuration (a scan sidecar's ``Segmentation``)."""
    settings = record.get("settings") or {}
    model = record.get("model") or {}
    parts = []
    resolution = model.get("resolution_mm", 1.0)
    low, high = settings.get("percentiles", (0.5, 99.5))
    pre = (f"Each scan was reoriented to RAS, resampled to {resolution:g} mm isotropic voxels where its voxels "
           f"differ from that (cubic spline), and its intensities were rescaled to [0, 1] between their {low:g}th "
           f"and {high:g}th percentiles")
    if settings.get("intensity_clip"):
        low, high = settings["intensity_clip"]
        pre += f", after clipping intensities to [{low:g}, {high:g}]"
    parts.append(pre + ".")
    backend = _BACKENDS.get(record.get("backend"), record.get("backend", "an unknown backend"))
    device = {"gpu": "a GPU", "cpu": "the CPU"}.get(record.get("device"), record.get("device", "an unknown device"))
    network = ""
    if describe_network and model.get("n_levels"):
        network = f" (a {model['n_levels']}-level U-Net with {model['base_features']} base features)"
    parts.append(f"The network{network} ran with {_named('Keras', record.get('keras_version'))} on "
                 f"{_named(backend, record.get('backend_version'))} on {device}.")
    if settings.get("flip", True):
        parts.append("The posteriors of the scan and of its left/right-flipped copy (flipped back, left and right "
                     "labels swapped) were averaged (test-time augmentation).")
    else:
        parts.append("Test-time left/right flip augmentation was off.")
    sigma = settings.get("smoothing_sigma", 0.5)
    smoothing = f"smoothed (Gaussian, sigma {sigma:g} voxels), " if sigma else ""
    parts.append(f"Posteriors were {smoothing}{_POSTPROCESS.get(settings.get('postprocess', 'full'), 'post-processed')}"
                 f", and they were resampled onto the scan's own grid before the label map was taken, "
                 f"so the segmentation has the scan's shape and orientation; it has {n_labels} labels "
                 f"({n_labels - 1} structures and the background).")
    return " ".join(parts)


def methods_text(sidecars: dict[str, dict], versions: dict[str, str] | None = None,
                 n_structures: int | None = None) -> tuple[str, dict | None]:
    """The methods paragraph for the scans whose volumes sidecars are given.

    Parameters
    ----------
    sidecars : dict
        Scan file name -> its ``_volumes.json`` content.
    versions : dict, optional
        ``version`` (synthseg-bids), ``nipype``, ``pybids`` and, for a subject without
        finished scans, ``model_sha256``.
    n_structures : int, optional
        Foreground structures in ``dseg.tsv`` (background excluded).

    Returns
    -------
    text : str
        Plain text, one paragraph per distinct prediction configuration.
    card : dict or None
        The model card (:func:`model_card`) of the model that ran, when it is the shipped one.
    """
    versions = dict(versions or {})
    version = next((s["Version"] for s in sidecars.values() if s.get("Version")), versions.get("version", __version__))
    shas = sorted({s.get("ModelSHA256") for s in sidecars.values() if s.get("ModelSHA256")}
                  or ({versions["model_sha256"]} if versions.get("model_sha256") else set()))
    records: dict[str, list[str]] = {}
    for name, sidecar in sidecars.items():
        record = sidecar.get("Segmentation")
        key = json.dumps(record, sort_keys=True) if record else ""
        records.setdefault(key, []).append(name)
    first_record = next((json.loads(k) for k in records if k), {})
    n_labels = (first_record.get("model") or {}).get("n_labels") or (n_structures + 1 if n_structures else 33)
    card = model_card(shas[0]) if len(shas) == 1 else None

    text = [
        f"Anatomical scans were segmented with synthseg-bids {version}, an implementation of SynthSeg (Billot et "
        "al., 2023), which segments brain MRI scans of any contrast and resolution with a 3D U-Net trained only on "
        "synthetic images generated from label maps with randomised contrast, resolution, bias field and "
        "deformation."
    ]
    if card:
        text.append(f"The model was the {card['name']} {card['version']} (sha256 {card['sha256']}): "
                    f"{card['description']}")
    elif shas:
        steps = (first_record.get("model") or {}).get("steps_trained")
        trained = f", trained for {steps:,} steps" if steps else ""
        text.append(f"The model file had sha256 {', '.join(shas)}{trained}.")
    paragraphs = [" ".join(text)]
    for key, names in records.items():
        prefix = f"For {', '.join(sorted(names))}: " if len(records) > 1 else ""
        if key:
            paragraphs.append(prefix + _describe_run(json.loads(key), n_labels, describe_network=card is None))
        else:
            paragraphs.append(prefix + "The prediction settings of these scans were not recorded (derivatives "
                              "written by an older version).")
    thresholds = next((s.get("QC", {}).get("thresholds") for s in sidecars.values()
                       if (s.get("QC") or {}).get("thresholds")), None)
    closing = ("Structure volumes (mm\u00b3) are the sums of the structures' posterior probabilities times the voxel "
               "volume. Automated quality control used the segmentation's own posteriors")
    if thresholds:
        rules = [f"{kind} below {value:.2f}" for kind, value in sorted(thresholds.items())]
        closing += f"; a scan was flagged when a structure group had a {' or a '.join(rules)}"
    closing += (f". Workflows were built with {_named('Nipype', versions.get('nipype'))} (Gorgolewski et al., 2011) "
                f"and the input dataset was queried with {_named('PyBIDS', versions.get('pybids'))} (Yarkoni et al., "
                "2019).")
    paragraphs.append(closing)
    return "\n\n".join(paragraphs), card


# -- the subject report ------------------------------------------------------------

#: FreeSurfer values of cortical parcels start here (``ctx-lh-*`` 1000-1035, ``ctx-rh-*`` 2000-2035).
CORTICAL_PARCEL_MIN = 1000


def _dseg_lookup(output_dir: Path) -> pd.DataFrame:
    """``dseg.tsv`` of the derivatives (index, name, color), or the default table's."""
    path = output_dir / "dseg.tsv"
    if path.is_file():
        return pd.read_csv(path, sep="\t", keep_default_na=False).set_index("index")
    return pd.DataFrame([{"index": s.value, "name": s.name, "color": "#%02x%02x%02x" % s.color}
                         for s in default_label_table()]).set_index("index")


def _sidecar(tsv: Path) -> dict:
    path = tsv.with_suffix(".json")
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _swatch(colour: str) -> str:
    return f'<span class="swatch" style="background:{html.escape(colour)}"></span>'


def _legend(values: list[int], lookup: pd.DataFrame) -> list[tuple[str, str]]:
    """(name, colour) per legend entry: a left/right pair of one colour is one entry.

    ``Left-Putamen`` and ``Right-Putamen`` (same LUT colour) read ``Putamen (left, right)``;
    a structure shown on one side only keeps its FreeSurfer name.
    """
    entries: dict[tuple[str, str], list[str]] = {}
    for value in values:
        if value not in lookup.index:
            continue
        name, colour = str(lookup.at[value, "name"]), str(lookup.at[value, "color"])
        side, _, stem = name.partition("-")
        key = (stem, colour) if side in ("Left", "Right") else (name, colour)
        entries.setdefault(key, []).append(side.lower() if side in ("Left", "Right") else "")
    legend = []
    for (stem, colour), sides in entries.items():
        if len(sides) == 2:
            legend.append((f"{stem} (left, right)", colour))
        else:
            legend.append((f"{sides[0].capitalize()}-{stem}" if sides[0] else stem, colour))
    return legend


def _qc_table(row: pd.Series, columns: list[str], sidecar: dict) -> tuple[str, list[str]]:
    """HTML table (groups x score kinds, 'score >= threshold') and the failing score names."""
    thresholds = (sidecar.get("QC") or {}).get("thresholds") or {}
    kinds = sorted(thresholds, key=len, reverse=True)
    cells: dict[str, dict[str, str]] = {}
    order: list[str] = []
    failing = []
    for column in columns:
        name = (sidecar.get(column) or {}).get("LongName", column[3:].replace("_", " "))
        kind = next((k for k in kinds if name.endswith(k)), "score")
        group = name[: len(name) - len(kind)].strip() if kind != "score" else name
        if kind not in order:
            order.append(kind)
        value = pd.to_numeric(row[column], errors="coerce")
        if not np.isfinite(value):
            text, css = "n/a (not in the segmentation)", "na"
        elif kind in thresholds:
            limit = float(thresholds[kind])
            passed = value >= limit
            text = f"{value:.3f} {'&ge;' if passed else '&lt;'} {limit:.2f}"
            css = "pass" if passed else "fail"
            if not passed:
                failing.append(f"{group} {kind}")
        else:
            text, css = f"{value:.3f}", "na"
        cells.setdefault(group, {})[kind] = f'<td class="{css}">{text}</td>'
    header = "".join(f"<th>{html.escape(k)}</th>" for k in order)
    body = "".join(f"<tr><th scope='row'>{html.escape(g)}</th>{''.join(c.get(k, '<td></td>') for k in order)}</tr>"
                   for g, c in cells.items())
    return f'<table class="qc"><tr><th>structure group</th>{header}</tr>{body}</table>', failing


def _network_qc_table(row: pd.Series, columns: list[str], sidecar: dict) -> str:
    """HTML table of SynthSeg's QC-network scores (``qc_network_*`` columns), empty without them."""
    if not columns:
        return ""
    cells = []
    for column in columns:
        name = (sidecar.get(column) or {}).get("LongName", column[len(NETWORK_QC_PREFIX):].replace("_", " "))
        value = pd.to_numeric(row[column], errors="coerce")
        shown = f"{value:.3f}" if np.isfinite(value) else "n/a"
        cells.append(f"<tr><th scope='row'>{html.escape(name.removesuffix(' (QC network)'))}</th>"
                     f"<td class='na'>{shown}</td></tr>")
    return ("<h4>SynthSeg's QC network</h4><p class='explain'>Scores of SynthSeg's published QC network "
            "(synthseg_qc_2.0.h5) per structure group, between 0 and 1: higher means a better segmentation of the "
            "group. They do not set the flag above, which comes from the segmentation's own posteriors.</p>"
            f"<table class='qc'><tr><th>structure group</th><th>score</th></tr>{''.join(cells)}</table>")


def _qc_sentence(sidecar: dict) -> str:
    thresholds = (sidecar.get("QC") or {}).get("thresholds") or {}
    rules = " or ".join(f"its {html.escape(k)} is below {v:.2f}" for k, v in sorted(thresholds.items()))
    when = f" when, for any structure group, {rules}" if rules else " when a score is below its threshold"
    return (f"The scan is flagged{when}. Confidence is the mean largest posterior over the group's voxels; flip "
            "Dice is the agreement between the segmentations of the scan and of its left/right-flipped copy. "
            "A flag means: look at the figure before using this scan's volumes; it does not prove an error, "
            "and passing does not prove the segmentation right.")


def _scan_section(tsv: Path, output_dir: Path, sub_dir: Path, lookup: pd.DataFrame) -> str:
    stem = tsv.name[: -len("_volumes.tsv")]
    table = read_volumes_tsv(tsv)
    row = table.iloc[0]
    sidecar = _sidecar(tsv)
    source = str(row["source"])
    figure = sub_dir / "figures" / f"{stem}_dseg.png"
    network_cols = [c for c in table.columns if c.startswith(NETWORK_QC_PREFIX)]
    qc_cols = [c for c in table.columns if c.startswith("qc_") and c != "qc_flag" and c not in network_cols]
    vol_cols = [c for c in table.columns if c not in ID_COLUMNS and not c.startswith("qc_")]
    qc_html, failing = _qc_table(row, qc_cols, sidecar)
    network_html = _network_qc_table(row, network_cols, sidecar)
    flag = str(row.get("qc_flag", "n/a")).lower()  # tables written before this change: "True"/"False"
    if flag == "true":
        status = (f'<p class="status warn">QC: FLAGGED, check this segmentation '
                  f'({html.escape(", ".join(failing) or "see the scores")})</p>')
    elif flag == "false":
        status = '<p class="status ok">QC: passed (every score at or above its threshold)</p>'
    else:
        status = '<p class="status na">QC: no scores</p>'
    if figure.exists():
        legend = "".join(f"<li>{_swatch(colour)}{html.escape(name)}</li>"
                         for name, colour in _legend(figure_labels(figure), lookup))
        fig_html = (
            f'<figure><img class="figure" width="{FIGURE_WIDTH_PX}" alt="segmentation of {html.escape(source)}" '
            f'src="{html.escape(figure.relative_to(output_dir).as_posix())}">'
            f"<figcaption>Sagittal, coronal and axial slices through the centre of the segmentation, label map "
            f"over the scan in FreeSurfer's colours (neurological convention: the subject's left on the left; "
            f"A/P anterior/posterior).</figcaption></figure>"
            + (f'<ul class="legend" aria-label="colour legend">{legend}</ul>' if legend else "")
        )
    else:
        fig_html = "<p class='warn'>figure missing</p>"
    names = {c: (sidecar.get(c) or {}).get("LongName", c) for c in vol_cols}
    by_name = {str(n): v for v, n in lookup["name"].items()}
    vol_rows = []
    for column in vol_cols:
        value = pd.to_numeric(row[column], errors="coerce")
        label = by_name.get(names[column])
        swatch = _swatch(lookup.at[label, "color"]) if label is not None else ""
        shown = "n/a" if not np.isfinite(value) else f"{value:,.0f}"
        vol_rows.append(f"<tr><td>{swatch}{html.escape(str(names[column]))}</td>"
                        f"<td><code>{html.escape(column)}</code></td><td class='num'>{shown}</td></tr>")
    return (
        f'<section id="{html.escape(stem)}"><h2>{html.escape(source)}</h2>{status}{fig_html}'
        f"<h3>Quality control</h3><p class='explain'>{_qc_sentence(sidecar)}</p>{qc_html}{network_html}"
        f"<details><summary>Volumes (mm&sup3;)</summary><table class='volumes'>"
        f"<tr><th>structure (FreeSurfer)</th><th>column in _volumes.tsv</th><th>mm&sup3;</th></tr>"
        f"{''.join(vol_rows)}</table></details></section>"
    )


def _references() -> str:
    return (_DATA / "boilerplate.md").read_text().strip()


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
        ``version``, ``nipype``, ``pybids`` and ``model_sha256`` for the methods text
        (what ran for each scan comes from its sidecar).
    errors : list of str, optional
        Failures of this run to list at the top of the report.
    """
    output_dir = Path(output_dir)
    sub_dir = output_dir / f"sub-{subject}"
    template = Template((_DATA / "report.html").read_text())
    lookup = _dseg_lookup(output_dir)
    tsvs = sorted(sub_dir.rglob(f"*_desc-{DESC_PREFIX}*_volumes.tsv"))
    sections = [_scan_section(tsv, output_dir, sub_dir, lookup) for tsv in tsvs]
    sidecars = {tsv.name.replace("_volumes.tsv", ""): _sidecar(tsv) for tsv in tsvs}
    n_parcels = int((lookup.index >= CORTICAL_PARCEL_MIN).sum())  # Desikan-Killiany rows (with --parc)
    n_structures = int((lookup.index != 0).sum()) - n_parcels
    text, card = methods_text(sidecars, versions, n_structures)
    model_html = ""
    if card:
        rows = "".join(f"<tr><td>{html.escape(a['what'])}</td><td class='num'>{a['value']:.3f}</td></tr>"
                       for a in card["accuracy"])
        model_html = (f"<h3>The model</h3><p>{html.escape(card['name'])} {html.escape(card['version'])}, "
                      f"sha256 <code>{html.escape(card['sha256'])}</code>, {card['steps_trained']:,} training steps. "
                      f"Measured accuracy (see the section &ldquo;{html.escape(card['readme_title'])}&rdquo; of "
                      f"the synthseg-bids README, <code>{html.escape(card['readme_section'])}</code>):</p>"
                      f"<table class='accuracy'>{rows}</table>")
    parcels = (f", and {n_parcels} Desikan-Killiany cortical parcels (values {CORTICAL_PARCEL_MIN} and up) of the "
               "<code>_desc-synthsegparc&lt;contrast&gt;_dseg</code> label maps") if n_parcels else ""
    labels_html = (f"<p>Labels: {n_structures + n_parcels + 1} in <code>dseg.tsv</code>, that is {n_structures} "
                   "brain structures (FreeSurfer's values and names, CSF included) and the background (0)"
                   f"{parcels}.</p>")
    error_html = "".join(f"<li>{html.escape(e)}</li>" for e in (errors or []))
    versions = dict(versions or {})
    page = template.safe_substitute(
        subject=html.escape(subject),
        sections="\n".join(sections) or "<p>No segmentation found for this subject.</p>",
        errors=f'<section class="errors"><h2>Errors</h2><ul>{error_html}</ul></section>' if error_html else "",
        methods="".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n")),
        model=model_html + labels_html,
        references=html.escape(_references()),
        version=html.escape(versions.get("version", "")),
    )
    return atomic_write_text(output_dir / f"sub-{subject}.html", page)


class _SubjectReportInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(mandatory=True, desc="derivatives folder (created when missing)")
    subject = traits.Str(mandatory=True, desc="subject label without sub-")
    versions = traits.Dict(traits.Str, traits.Str, desc="versions for the methods text")
    errors = traits.List(traits.Str, desc="failures of this run, listed at the top of the report")
    wait_for = traits.List(traits.Any, desc="any outputs to wait for before writing (ordering only)")


class _SubjectReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="sub-<label>.html")


class SubjectReport(SimpleInterface):
    """Write a subject's HTML report from its derivatives (see :func:`write_subject_report`).

    Always runs (the derivatives on disk are its real input, and they change between runs).
    """

    input_spec = _SubjectReportInputSpec
    output_spec = _SubjectReportOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        out = write_subject_report(self.inputs.output_dir, self.inputs.subject,
                                   versions=dict(self.inputs.versions or {}), errors=list(self.inputs.errors or []))
        self._results["out_report"] = str(out)
        return runtime
