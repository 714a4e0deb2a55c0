"""Derivatives folders for the report tests (``from report_data import add_scan``): toy scans, their figures, volumes tables and sidecars.

Built in a fraction of a second from :func:`helpers.make_toy_label_map` (no network runs):
the scan is the label map with an intensity per label, so its figures are exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from helpers import make_toy_label_map, toy_affine

from synthseg_bids.bids import derivative_path
from synthseg_bids.bids.tables import scan_row, volumes_sidecar, write_volumes_tsv
from synthseg_bids.core.labels import default_label_table
from synthseg_bids.core.volumes import volumes_from_labels
from synthseg_bids.reports.figures import THUMBNAIL_VARIANT, plot_mosaic, plot_thumbnail

THRESHOLDS = {"confidence": 0.7, "flip dice": 0.8}


def segmentation_record(backend="jax", flip=True, postprocess="full") -> dict:
    """A scan sidecar's ``Segmentation`` entry (what ran)."""
    return {"backend": backend, "backend_version": "0.7.2", "keras_version": "3.15.1", "device": "cpu",
            "settings": {"flip": flip, "postprocess": postprocess, "smoothing_sigma": 0.5,
                         "percentiles": [0.5, 99.5], "intensity_clip": None},
            "model": {"file": "my_model.npz", "package_version": "0.1.0", "n_levels": 5, "base_features": 16,
                      "n_labels": 33, "resolution_mm": 1.0, "steps_trained": 1234, "validation": None}}


def toy_scan(folder: Path, name: str, labels: np.ndarray, affine=None) -> tuple[Path, Path]:
    """A scan (the labels with an intensity each) and its label map, saved under ``folder``."""
    affine = toy_affine() if affine is None else affine
    folder.mkdir(parents=True, exist_ok=True)
    anat, dseg = folder / f"{name}.nii.gz", folder / f"{name}_labels.nii.gz"
    nib.save(nib.Nifti1Image((labels > 0) * 60.0 + labels.astype(np.float32), affine), anat)
    nib.save(nib.Nifti1Image(labels.astype(np.int16), affine), dseg)
    return anat, dseg


def add_scan(out: Path, source: str, *, seed: int = 0, scores: dict | None = None, flag: bool = False,
             segmentation: dict | None = None, sha256: str = "ab" * 32, figures: bool = True,
             scale: float = 1.0) -> Path:
    """Write one scan's derivatives (figures, volumes table and sidecar) into ``out``; returns the table."""
    table = default_label_table()
    labels = make_toy_label_map(shape=(40, 48, 36), seed=seed)
    labels[labels == 258] = 0
    affine = toy_affine() @ np.diag([scale, 1, 1, 1])
    if figures:
        anat, dseg = toy_scan(out.parent / "scans" / Path(source).name.split(".")[0], "scan", labels, affine)
        plot_mosaic(anat, dseg, derivative_path(source, out, "dseg", ".png", datatype="figures"))
        plot_thumbnail(anat, dseg, derivative_path(source, out, "dseg", ".png", datatype="figures",
                                                   variant=THUMBNAIL_VARIANT))
    scores = scores if scores is not None else {"general white matter confidence": 0.9,
                                                "general white matter flip dice": 0.9}
    results = {"volumes": volumes_from_labels(labels, affine, table),
               "qc": {"scores": scores, "flag": flag, "flagged": [], "thresholds": THRESHOLDS},
               "label_table": table.to_metadata()}
    tsv = derivative_path(source, out, "volumes", ".tsv")
    tsv.parent.mkdir(parents=True, exist_ok=True)
    write_volumes_tsv(pd.DataFrame([scan_row(results, source)]), tsv)
    sidecar = {"Description": "x", "QC": results["qc"], "Segmentation": segmentation or segmentation_record(),
               "Model": "/home/someone/secret/models/my_model.npz", "ModelSHA256": sha256, "Version": "9.9.9",
               "Config": {"run_uuid": "20260101-000000_abcd"}, **volumes_sidecar(results)}
    tsv.with_suffix(".json").write_text(json.dumps(sidecar))
    return tsv
