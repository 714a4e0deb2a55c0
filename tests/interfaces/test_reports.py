"""The per-subject HTML report and its figures.

References are independent of the report code: image sizes and text fields read back
with Pillow, colours from ``dseg.tsv`` written by ``LabelTable``, the storage order of a
scan (a flipped LPS copy must give the very same figure), the shipped model's sha256
from ``hashlib`` and its accuracy from the measurement tables in ``docs/model/``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage

from synthseg_bids.core.labels import default_label_table
from synthseg_bids.core.volumes import volumes_from_labels
from synthseg_bids.interfaces.reports import (
    FIGURE_WIDTH_PX,
    figure_labels,
    methods_text,
    model_card,
    plot_segmentation,
    write_subject_report,
)
from synthseg_bids.interfaces.volumes import scan_row, volumes_sidecar, write_volumes_tsv

from helpers import make_toy_label_map, toy_affine

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "synthseg_bids" / "data" / "default_model.npz"


def _scan(tmp_path: Path, affine=None) -> tuple[Path, Path, np.ndarray]:
    labels = make_toy_label_map(shape=(40, 48, 36))
    labels[labels == 258] = 0
    affine = toy_affine() if affine is None else affine
    anat, dseg = tmp_path / "sub-01_T1w.nii.gz", tmp_path / "sub-01_dseg.nii.gz"
    nib.save(nib.Nifti1Image((labels > 0) * 60.0 + labels.astype(np.float32), affine), anat)
    nib.save(nib.Nifti1Image(labels.astype(np.int16), affine), dseg)
    return anat, dseg, labels


def test_figure_is_rendered_at_twice_the_displayed_size_and_lists_its_labels(tmp_path):
    anat, dseg, labels = _scan(tmp_path)
    png = plot_segmentation(anat, dseg, tmp_path / "fig.png")
    with PILImage.open(png) as image:
        width, height = image.size
        assert image.text["Labels"]
    assert width == 2 * FIGURE_WIDTH_PX and height > 400
    shown = figure_labels(png)
    assert set(shown) <= set(np.unique(labels).tolist()) - {0}
    assert {2, 3, 41, 42, 24} <= set(shown)  # cut by the slices through the centre


def test_figure_does_not_depend_on_how_the_scan_is_stored(tmp_path):
    """An LPS copy of the scan (axes 0 and 1 reversed, affine adjusted) gives the same picture."""
    ras_dir, lps_dir = tmp_path / "ras", tmp_path / "lps"
    ras_dir.mkdir(), lps_dir.mkdir()
    anat, dseg, labels = _scan(ras_dir)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [labels.shape[0] - 1, labels.shape[1] - 1]
    lps_affine = toy_affine() @ flip
    for src, name in ((anat, "sub-01_T1w.nii.gz"), (dseg, "sub-01_dseg.nii.gz")):
        img = nib.load(src)
        data = np.asanyarray(img.dataobj)[::-1, ::-1]
        nib.save(nib.Nifti1Image(data, lps_affine), lps_dir / name)
    assert np.allclose(nib.load(lps_dir / "sub-01_T1w.nii.gz").affine @ [39, 47, 0, 1], toy_affine() @ [0, 0, 0, 1])
    a = plot_segmentation(anat, dseg, tmp_path / "ras.png")
    b = plot_segmentation(lps_dir / "sub-01_T1w.nii.gz", lps_dir / "sub-01_dseg.nii.gz", tmp_path / "lps.png")
    with PILImage.open(a) as ia, PILImage.open(b) as ib:
        assert np.array_equal(np.asarray(ia), np.asarray(ib))


def _derivatives(tmp_path: Path, *, scores: dict, flag: bool, segmentation: dict, sha256: str) -> Path:
    out = tmp_path / "out"
    anat_dir = out / "sub-01" / "anat"
    fig_dir = out / "sub-01" / "figures"
    anat_dir.mkdir(parents=True), fig_dir.mkdir(parents=True)
    table = default_label_table()
    table.write_dseg_tsv(out / "dseg.tsv")
    anat, dseg, labels = _scan(tmp_path)
    plot_segmentation(anat, dseg, fig_dir / "sub-01_desc-synthsegT1w_dseg.png")
    results = {"volumes": volumes_from_labels(labels, toy_affine(), table),
               "qc": {"scores": scores, "flag": flag, "flagged": [],
                      "thresholds": {"confidence": 0.7, "flip dice": 0.8}},
               "label_table": table.to_metadata(), "segmentation": segmentation}
    row = scan_row(results, "/d/sub-01/anat/sub-01_T1w.nii.gz")
    write_volumes_tsv(pd.DataFrame([row]), anat_dir / "sub-01_desc-synthsegT1w_volumes.tsv")
    sidecar = {"Description": "x", "QC": results["qc"], "Segmentation": segmentation,
               "Model": "/home/someone/secret/models/my_model.npz", "ModelSHA256": sha256, "Version": "9.9.9",
               **volumes_sidecar(results)}
    (anat_dir / "sub-01_desc-synthsegT1w_volumes.json").write_text(json.dumps(sidecar))
    return out


def _segmentation(backend="jax", flip=True, postprocess="full") -> dict:
    return {"backend": backend, "backend_version": "0.7.2", "keras_version": "3.15.1", "device": "cpu",
            "settings": {"flip": flip, "postprocess": postprocess, "smoothing_sigma": 0.5,
                         "percentiles": [0.5, 99.5], "intensity_clip": None},
            "model": {"file": "my_model.npz", "package_version": "0.1.0", "n_levels": 5, "base_features": 16,
                      "n_labels": 33, "resolution_mm": 1.0, "steps_trained": 1234, "validation": None}}


def test_report_legend_qc_thresholds_and_methods(tmp_path):
    scores = {"general white matter confidence": 0.714, "general grey matter confidence": 0.65,
              "general white matter flip dice": 0.9, "brainstem confidence": float("nan")}
    out = _derivatives(tmp_path, scores=scores, flag=True, segmentation=_segmentation(flip=False, postprocess="brain"),
                       sha256="ab" * 32)
    page = write_subject_report(out, "01", versions={"version": "9.9.9", "nipype": "1.10.0"}).read_text()

    # figure shown at the size it was rendered for (its PNG has twice the pixels)
    img = re.search(r'<img class="figure" width="(\d+)"[^>]*src="([^"]+)"', page)
    with PILImage.open(out / img.group(2)) as png:
        assert png.size[0] >= 2 * int(img.group(1))
    # legend: every structure drawn, with its dseg.tsv colour; a left/right pair (one colour) is one entry
    dseg = pd.read_csv(out / "dseg.tsv", sep="\t").set_index("index")
    shown = {str(dseg.at[v, "name"]): str(dseg.at[v, "color"]) for v in figure_labels(out / img.group(2))}
    expected = set()
    for name, colour in shown.items():
        side, _, stem = name.partition("-")
        other = {"Left": "Right", "Right": "Left"}.get(side)
        if other and shown.get(f"{other}-{stem}") == colour:
            expected.add((f"{stem} (left, right)", colour))
        else:
            expected.add((name, colour))
    entry = r'<li><span class="swatch" style="background:([^"]+)"></span>([^<]+)</li>'
    legend = {(n, c) for c, n in re.findall(entry, page)}
    assert legend == expected and ("Cerebral-White-Matter (left, right)", "#f5f5f5") in legend
    assert "Brain-Stem" in {n for n, _ in legend}
    # QC: score and threshold side by side, the failing one marked, the flag explained
    assert '<td class="pass">0.714 &ge; 0.70</td>' in page
    assert '<td class="fail">0.650 &lt; 0.70</td>' in page
    assert '<td class="pass">0.900 &ge; 0.80</td>' in page
    assert "n/a (not in the segmentation)" in page
    assert "QC: FLAGGED" in page and "general grey matter confidence" in page
    assert "The scan is flagged when, for any structure group, its confidence is below 0.70 or its flip dice" in page
    # methods from what ran: backend, flip and post-processing as recorded; no local paths
    assert "JAX 0.7.2" in page and "TensorFlow" not in page
    assert "Test-time left/right flip augmentation was off." in page
    assert "only the largest connected component of the whole brain was kept" in page
    assert "trained for 1,234 steps" in page and "ab" * 32 in page
    assert "/home/someone" not in page and "secret" not in page
    assert "33 in <code>dseg.tsv</code>, that is 32 brain structures" in page
    assert "synthseg-bids 9.9.9" in page and "Nipype 1.10.0" in page and "${" not in page and "$sections" not in page


def test_methods_follow_the_settings_and_name_the_shipped_model():
    sha = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    record = _segmentation(backend="tensorflow", flip=True, postprocess="full")
    record["backend_version"] = "2.21.0"
    text, card = methods_text({"sub-01_T1w": {"Segmentation": record, "ModelSHA256": sha, "Version": "0.1.0"}})
    assert card is not None and card["sha256"] == sha
    assert "TensorFlow 2.21.0" in text and "left/right-flipped copy" in text
    assert "each structure group was reduced to its largest connected component" in text
    assert "9,500 steps" in text and sha in text
    other, none = methods_text({"a": {"Segmentation": record, "ModelSHA256": "cd" * 32},
                                "b": {"Segmentation": _segmentation(flip=False), "ModelSHA256": "cd" * 32}})
    assert none is None and "For a: " in other and "For b: " in other


def test_model_card_matches_the_shipped_file_and_the_measurements():
    sha = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    card = model_card(sha)
    assert card is not None, "default_model_card.json describes another file: update it with the model"
    assert model_card("0" * 64) is None
    docs = ROOT / "docs" / "model"
    if not docs.is_dir():
        pytest.skip("docs/model (the measurement tables) not in this checkout")
    curve = pd.read_csv(docs / "validation_dice.tsv", sep="\t")
    assert int(curve["step"].iloc[-1]) == card["steps_trained"]
    mni = pd.read_csv(docs / "mni152_dice.tsv", sep="\t").set_index("group")["dice"]
    contrast = pd.read_csv(docs / "contrast_resolution_dice.tsv", sep="\t")
    t1 = contrast[(contrast.condition == "t1 1mm") & (contrast.grid == "input")]["mean_dice"].iloc[0]
    t2 = contrast[(contrast.condition == "t2 5mm") & (contrast.grid == "input")]["mean_dice"].iloc[0]
    expected = [curve["mean_dice"].iloc[-1], t1, t2, mni["white matter"], mni["grey matter"]]
    assert [a["value"] for a in card["accuracy"]] == pytest.approx(expected, abs=6e-4)
