"""The per-scan and group volumes tables: BIDS-style columns, described in the sidecar, fixed formats.

The TSV text is read back with the standard library's ``csv`` module (not with pandas,
which wrote it), and compared with the values put in: volumes from a voxel count of a
toy label map (closed form: count x voxel volume), hand-set QC scores.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import make_toy_label_map

from synthseg_bids.bids.tables import column_name, volumes_sidecar
from synthseg_bids.core.labels import default_label_table
from synthseg_bids.core.volumes import volumes_from_labels
from synthseg_bids.interfaces.volumes import GroupVolumes, VolumesTable

SNAKE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")
VOXEL = np.diag([1.2, 1.2, 1.2, 1.0])  # 1.728 mm^3 per voxel


def _results(path: Path, *, seed: int = 0, scale: float = 1.0, qc_scores=None, flag=False) -> Path:
    table = default_label_table()
    labels = make_toy_label_map(seed=seed)
    labels[labels == 258] = 0  # scalp: not a segmented structure
    volumes = volumes_from_labels(labels, VOXEL * np.array([scale, 1, 1, 1])[:, None], table)
    if qc_scores is None:
        qc_scores = {"general white matter confidence": 0.7123456, "general csf confidence": float("nan"),
                     "putamen+pallidum flip dice": 0.91}
    path.write_text(json.dumps({
        "volumes": volumes,
        "qc": {"scores": qc_scores, "flag": flag, "flagged": [],
               "thresholds": {"confidence": 0.7, "flip dice": 0.8}},
        "label_table": table.to_metadata(),
    }))
    return path


def _read(path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream, delimiter="\t")
        return list(reader.fieldnames or []), list(reader)


def _table(tmp_path, name, source, **kwargs) -> Path:
    node = tmp_path / name
    node.mkdir()
    results = _results(node / "results.json", **kwargs)
    return Path(VolumesTable(in_results=str(results), source_file=source).run(cwd=str(node)).outputs.out_tsv)


def test_scan_table_columns_values_and_formats(tmp_path):
    tsv = _table(tmp_path, "a", "/d/sub-01/ses-2/anat/sub-01_ses-2_run-1_T2w.nii.gz", scale=1000.0)
    header, rows = _read(tsv)
    assert len(rows) == 1
    row = rows[0]
    assert all(SNAKE.match(c) for c in header), [c for c in header if not SNAKE.match(c)]
    assert header[:5] == ["participant_id", "session_id", "source", "contrast", "qc_flag"]
    assert (row["participant_id"], row["session_id"], row["contrast"]) == ("sub-01", "ses-2", "T2w")
    assert row["qc_flag"] == "false"
    assert row["qc_general_white_matter_confidence"] == "0.7123"
    assert row["qc_general_csf_confidence"] == "n/a"
    assert row["qc_putamen_pallidum_flip_dice"] == "0.9100"

    labels = make_toy_label_map(seed=0)
    voxel_mm3 = 1.728 * 1000.0
    expected = {"left_cerebral_white_matter": np.sum(labels == 2) * voxel_mm3, "csf": np.sum(labels == 24) * voxel_mm3,
                "brain_stem": np.sum(labels == 16) * voxel_mm3,
                "total_intracranial": np.sum((labels > 0) & (labels != 258)) * voxel_mm3}
    for column, value in expected.items():
        assert float(row[column]) == pytest.approx(value, abs=5e-4)
    assert expected["total_intracranial"] > 1e6  # large enough that %g would have printed an exponent
    for column in header[5:]:
        pattern = r"^\d\.\d{4}$" if column.startswith("qc_") else r"^\d+\.\d{3}$"
        assert row[column] == "n/a" or re.match(pattern, row[column]), (column, row[column])
    # structures absent from the map are 0, written in the same format
    assert row["left_hippocampus"] == "0.000"
    assert {"right_cerebral_white_matter", "left_ventral_dc", "3rd_ventricle", "left_inf_lat_vent"} <= set(header)


def test_sidecar_describes_every_column_with_freesurfer_names(tmp_path):
    results = json.loads(_results(tmp_path / "r.json").read_text())
    tsv = _table(tmp_path, "a", "/d/sub-01/anat/sub-01_T1w.nii.gz")
    header, _ = _read(tsv)
    sidecar = volumes_sidecar(results)
    assert set(header) == set(sidecar)
    assert all(sidecar[c].get("Description") for c in header)
    names = {s.name for s in default_label_table() if s.value}
    long_names = {sidecar[c]["LongName"] for c in header if sidecar[c].get("Units") == "mm^3"}
    assert long_names == names | {"total intracranial volume"}
    assert sidecar["left_cerebral_white_matter"]["LongName"] == "Left-Cerebral-White-Matter"
    assert "FreeSurfer label 2)" in sidecar["left_cerebral_white_matter"]["Description"]
    assert "below 0.70" in sidecar["qc_general_white_matter_confidence"]["Description"]
    assert "below 0.80" in sidecar["qc_putamen_pallidum_flip_dice"]["Description"]
    assert set(sidecar["qc_flag"]["Levels"]) == {"true", "false"}


def test_scan_without_qc_scores_has_na_flag(tmp_path):
    tsv = _table(tmp_path, "a", "/d/sub-01/anat/sub-01_T1w.nii.gz", qc_scores={})
    header, rows = _read(tsv)
    assert rows[0]["qc_flag"] == "n/a" and not [c for c in header if c.startswith("qc_") and c != "qc_flag"]


def test_column_names_that_collide_are_refused():
    assert column_name("Left-Cerebral-White-Matter") == "left_cerebral_white_matter"
    with pytest.raises(ValueError, match="both give the column name 'qc_a_b'"):
        volumes_sidecar({"qc": {"scores": {"a b": 0.5, "a+b": 0.4}}})


def test_group_tables_read_the_new_columns(tmp_path):
    tsvs = [_table(tmp_path, f"n{i}", f"/d/sub-{i:02d}/anat/sub-{i:02d}_T1w.nii.gz", seed=0, scale=s, flag=(i == 1))
            for i, s in enumerate([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 3.0])]
    res = GroupVolumes(in_tsvs=[str(t) for t in tsvs], z_threshold=2.0).run(cwd=str(tmp_path))
    header, rows = _read(res.outputs.out_volumes)
    assert [r["participant_id"] for r in rows] == [f"sub-{i:02d}" for i in range(7)]
    assert [r["qc_flag"] for r in rows] == ["false", "true"] + ["false"] * 5  # not pandas' True/False
    assert all(re.match(r"^\d+\.\d{3}$", r["total_intracranial"]) for r in rows)
    _, summary = _read(res.outputs.out_summary)
    tiv = next(r for r in summary if r["structure"] == "total_intracranial")
    values = [float(r["total_intracranial"]) for r in rows]
    assert int(tiv["n"]) == 7 and float(tiv["mean"]) == pytest.approx(np.mean(values), abs=1e-3)
    assert float(tiv["std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-3)
    _, outliers = _read(res.outputs.out_outliers)
    reasons = {(r["participant_id"], r["reason"]) for r in outliers}
    assert ("sub-01", "qc_flag") in reasons and ("sub-06", "volume_zscore") in reasons
    assert all(r["z"] == "n/a" or re.match(r"^-?\d+\.\d{2}$", r["z"]) for r in outliers)
    text = Path(res.outputs.out_volumes).read_text()
    assert "True" not in text and "e+0" not in text and not re.search(r"\tnan\b", text)
    assert io.StringIO(text).readline().count(" ") == 0
