"""The group level's tables and report: synthetic per-scan tables (no segmentation runs).

References: outliers recomputed here with numpy from the values the test wrote, QC flags
and thresholds set by the test, and the HTML parsed back with the standard library.
"""

from __future__ import annotations

import json
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_data import THRESHOLDS

from synthseg_bids.bids.tables import (
    gather_volumes,
    scan_table_problem,
    write_volumes_tsv,
)
from synthseg_bids.cli.main import main
from synthseg_bids.core.labels import default_label_table

STRUCTURES = [s.name for s in default_label_table().structures[1:]]


class _Links(HTMLParser):
    """Links and images of a page, and the rows (cell texts) of its ``table.flagged``."""

    def __init__(self, text: str):
        super().__init__()
        self.links, self.images, self.flagged, self._in_flagged, self._row = [], [], [], False, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs.get("href"))
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self._in_flagged = attrs.get("class") == "flagged"
        elif tag == "tr" and self._in_flagged:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._row.append("")

    def handle_data(self, data):
        if self._row:
            self._row[-1] += data

    def handle_endtag(self, tag):
        if tag == "tr" and self._row:
            self.flagged.append(self._row)
        if tag in ("tr", "table"):
            self._row = None if tag == "tr" else self._row
            self._in_flagged = self._in_flagged and tag != "table"


def synthetic_tables(out: Path, n: int, rng: np.random.Generator, *, big_hippocampus: int | None = None) -> Path:
    """Per-scan volumes tables of ``n`` subjects (one T1w each), a few QC flags; returns the expected values."""
    rows = []
    for i in range(n):
        tiv = rng.normal(1.5e6, 1.2e5)
        shares = np.abs(rng.normal(1.0, 0.05, len(STRUCTURES))) / len(STRUCTURES)
        volumes = dict(zip(STRUCTURES, shares * tiv * 0.9))
        if i == big_hippocampus:
            volumes["Left-Hippocampus"] *= 3
        confidence = float(rng.uniform(0.6, 0.95))
        row = {"participant_id": f"sub-{i:04d}", "session_id": "n/a", "source": f"sub-{i:04d}_T1w.nii.gz",
               "contrast": "T1w", "qc_flag": "true" if confidence < THRESHOLDS["confidence"] else "false",
               "qc_general_white_matter_confidence": confidence,
               **{name.lower().replace("-", "_"): v for name, v in volumes.items()},
               "total_intracranial": sum(volumes.values())}
        tsv = out / f"sub-{i:04d}" / "anat" / f"sub-{i:04d}_desc-synthsegT1w_volumes.tsv"
        tsv.parent.mkdir(parents=True)
        write_volumes_tsv(pd.DataFrame([row]), tsv)
        rows.append(row)
    first = out / "sub-0000" / "anat" / "sub-0000_desc-synthsegT1w_volumes.json"
    first.write_text(json.dumps({"QC": {"thresholds": THRESHOLDS},
                                 "qc_general_white_matter_confidence": {"LongName": "general white matter confidence"}}))
    return pd.DataFrame(rows)


def _bids(tmp_path: Path, participants: str | None = None) -> Path:
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    if participants is not None:
        (bids / "participants.tsv").write_text(participants)
    return bids


def _group(bids: Path, out: Path) -> int:
    return main([str(bids), str(out), "group", "-w", str(out.parent / "work")])


def test_incomplete_tables_are_recognised(tmp_path):
    good = tmp_path / "sub-01_desc-synthsegT1w_volumes.tsv"
    header = "participant_id\tsession_id\tsource\tcontrast\tqc_flag\tcsf\ttotal_intracranial"
    good.write_text(f"{header}\nsub-01\tn/a\tsub-01_T1w.nii.gz\tT1w\tfalse\t1.0\t2.0\n")
    cases = {"empty": "", "header only": header + "\n", "truncated": header + "\nsub-02\tn/a\tsub-02_T1w.nii.gz\tT1w",
             "no ids": "csf\ttotal_intracranial\n1\t2\n"}
    paths = [good]
    for i, text in enumerate(cases.values(), start=2):
        paths.append(tmp_path / f"sub-0{i}_desc-synthsegT1w_volumes.tsv")
        paths[-1].write_text(text)
    paths.append(tmp_path / "sub-09_desc-synthsegT1w_volumes.tsv")
    paths[-1].write_bytes(b"\xff\xfe\x00garbage")
    assert scan_table_problem(good) is None
    problems = [scan_table_problem(p) for p in paths[1:]]
    assert problems == ["is empty", "has 0 data rows instead of 1", "has 4 fields in its row for 7 columns (truncated)",
                        "has no participant_id, session_id, source, contrast column", "cannot be read (UnicodeDecodeError)"]
    table, incomplete = gather_volumes(paths)
    assert table["participant_id"].tolist() == ["sub-01"]
    assert [i["participant_id"] for i in incomplete] == ["sub-02", "sub-03", "sub-04", "sub-05", "sub-09"]


def test_group_report_flags_outliers_qc_incomplete_and_failed_scans(tmp_path):
    out = tmp_path / "out"
    rows = synthetic_tables(out, 40, np.random.default_rng(3), big_hippocampus=7)
    broken = out / "sub-0040" / "anat" / "sub-0040_desc-synthsegT1w_volumes.tsv"
    broken.parent.mkdir(parents=True)
    broken.write_text("participant_id\tsession_id\tsource\tcontrast\nsub-0040\tn/a")  # a killed run
    crash = out / "logs" / "20260101-000000_abcd" / "sub-0041_T1w" / "crash-1.txt"
    crash.parent.mkdir(parents=True)
    crash.write_text("Traceback")
    bids = _bids(tmp_path, "participant_id\tage\tsex\n" + "".join(f"sub-{i:04d}\t{20 + i}\t{'MF'[i % 2]}\n"
                                                                   for i in range(40)))
    assert _group(bids, out) == 0
    page_text = (out / "group" / "report.html").read_text()
    page = _Links(page_text)
    # expected outliers, recomputed: |z| > 3 of each structure's share of TIV
    shares = rows.drop(columns=["participant_id", "session_id", "source", "contrast", "qc_flag",
                                "qc_general_white_matter_confidence", "total_intracranial"])
    shares = shares.div(rows["total_intracranial"], axis=0)
    z = (shares - shares.mean()) / shares.std(ddof=1)
    outliers = set(rows["participant_id"][(z.abs() > 3).any(axis=1)])
    tiv = rows["total_intracranial"]
    outliers |= set(rows["participant_id"][((tiv - tiv.mean()) / tiv.std(ddof=1)).abs() > 3])
    qc = set(rows["participant_id"][rows["qc_general_white_matter_confidence"] < THRESHOLDS["confidence"]])
    assert "sub-0007" in outliers and qc
    flagged = {row[0]: row for row in page.flagged}
    assert set(flagged) == outliers | qc | {"sub-0040", "sub-0041"}
    assert "incomplete table" in flagged["sub-0040"][2] and "failed" in flagged["sub-0041"][2]
    assert flagged["sub-0041"][3] == Path("..", crash.relative_to(out)).as_posix()
    assert "outlier: Left-Hippocampus" in flagged["sub-0007"][2] or "outlier: left_hippocampus" in flagged["sub-0007"][2]
    # every scan linked to its subject report section; the failed one to its errors entry
    for pid in rows["participant_id"]:
        assert f"../{pid}.html#{pid}_T1w" in page.links
    assert "../sub-0041.html#failed-sub-0041_T1w" in page.links
    assert "Volumes against age" in page_text and page_text.count('class="pt g') == 4 * 40 + 40  # TIV + 4 structures
    assert "http://" not in page_text.replace("http://www.w3.org", "") and "https://" not in page_text


def test_age_plots_only_with_an_age_column(tmp_path):
    out = tmp_path / "out"
    synthetic_tables(out, 5, np.random.default_rng(0))
    assert _group(_bids(tmp_path, "participant_id\tsex\n" + "".join(f"sub-{i:04d}\tF\n" for i in range(5))), out) == 0
    page = (out / "group" / "report.html").read_text()
    assert "Volumes against age" not in page and 'class="pt' not in page


def test_group_level_without_participant_results_fails_without_a_report(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert _group(_bids(tmp_path), out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"synthseg-bids: error: no participant-level results in {out}; run the participant level first"]
    assert not (out / "group").exists()


def test_group_level_of_1000_scans(tmp_path, capsys):
    """1,000 scans' tables: the report stays small; the time and sizes are printed, not asserted (machines differ)."""
    out = tmp_path / "out"
    synthetic_tables(out, 1000, np.random.default_rng(1))
    start = time.perf_counter()
    assert _group(_bids(tmp_path), out) == 0
    took = time.perf_counter() - start
    report = out / "group" / "report.html"
    page = report.read_text()
    assert page.count('loading="lazy"') == 0 and page.count("no thumbnail") == 1000  # tables only: no figures
    assert report.stat().st_size < 2_000_000
    with capsys.disabled():
        print(f"\ngroup level of 1000 scans: {took:.1f} s; report.html {report.stat().st_size / 1e3:.0f} kB, "
              f"volumes.tsv {(out / 'group' / 'volumes.tsv').stat().st_size / 1e3:.0f} kB")


@pytest.fixture(autouse=True)
def _quiet_nipype(monkeypatch):
    monkeypatch.setenv("NIPYPE_NO_ET", "1")
