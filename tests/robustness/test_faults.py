"""Fault tolerance: kill a participant run mid-way (SIGTERM, SIGKILL), run again.

The run is a real subprocess of the BIDS-App on 3 tiny scans, one at a time. The kill
lands at a deterministic point, whatever the machine's speed: a wrapper around
``DerivativesDataSink`` in the child sends the signal to the run's whole process group as
soon as a sink has stored the first scan's volumes sidecar (the scan's "done" mark), so
exactly one scan is finished and the others are not. After the kill no final-named file
may be half-written; the resumed run must complete every scan, leave no temporary file,
and not recompute the scan finished before the kill. A hang fails through
``pytest.mark.timeout``, not a wall-clock assertion.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pandas as pd
import pytest
from helpers import make_app_data

from synthseg_bids.cli.main import main

SCANS = ["sub-01/ses-1/anat/sub-01_ses-1_desc-synthsegT1w", "sub-01/ses-2/anat/sub-01_ses-2_desc-synthsegT1w",
         "sub-02/anat/sub-02_desc-synthsegT1w"]
CHILD = """
import glob, os, signal, sys
import synthseg_bids.interfaces.bids as s
kill_signal, out = int(sys.argv[1]), sys.argv[3]
original = s.DerivativesDataSink._run_interface
def store_then_kill(self, runtime):
    runtime = original(self, runtime)
    if glob.glob(os.path.join(out, "**", "*_volumes.json"), recursive=True):  # the first scan is done
        os.killpg(os.getpgrp(), kill_signal)
    return runtime
s.DerivativesDataSink._run_interface = store_then_kill
from synthseg_bids.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_model):
    data = make_app_data(tmp_path_factory.mktemp("faults"), tiny_model)
    data["filter"] = data["root"] / "filter.json"
    data["filter"].write_text('{"anat": {"suffix": "T1w"}}')  # 3 scans: sub-01 ses-1, ses-2 and sub-02
    return data


def argv(data, out, work):
    return [str(data["bids"]), str(out), "participant", "--model", str(data["model"]), "--nprocs", "1",
            "--inference-settings", str(data["fast"]), "-w", str(work), "--skip-bids-validation",
            "--bids-filter-file", str(data["filter"])]


def final_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]


def temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if ".tmp" in p.name]


def assert_complete_files_only(out: Path) -> None:
    """Every file under a final name is whole (readable to its end)."""
    for path in final_files(out):
        if path.name.endswith(".nii.gz"):
            assert nib.load(path).get_fdata().size > 0, path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".tsv":
            pd.read_csv(path, sep="\t")
        elif path.suffix == ".png":
            assert path.read_bytes().endswith(b"IEND\xaeB`\x82"), path


def scan_done(out: Path, stem: str) -> bool:
    return (out / f"{stem}_volumes.json").exists()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_kill_mid_run_then_resume(data, tmp_path, sig, caplog):
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(os.environ, NIPYPE_NO_ET="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(int(sig)), *argv(data, out, work)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate()
    finally:
        if proc.poll() is None:  # the timeout fired: end the run's whole group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -sig, f"the run was not killed by its sink: {stderr[-2000:]}"
    done_before = [s for s in SCANS if scan_done(out, s)]
    assert len(done_before) == 1, done_before  # killed right after the first scan, before the others
    assert_complete_files_only(out)
    finished = {str(p): p.stat().st_mtime_ns for s in done_before for p in out.glob(f"{s}_*")}
    finished.update({str(p): p.stat().st_mtime_ns for s in done_before
                     for p in out.glob(f"{s.split('/')[0]}/figures/{Path(s).name}_*")})
    # a run killed while writing leaves a temporary next to the final name: plant one
    todo = next(s for s in SCANS if s not in done_before)
    stale = out / Path(todo).parent / f".{Path(todo).name}_dseg.nii.gz.x1y2z3.tmp.nii.gz"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"\x1f\x8b half a file")

    caplog.set_level("INFO", logger="synthseg_bids")
    assert main(argv(data, out, work)) == 0
    for stem in SCANS:
        seg = nib.load(out / f"{stem}_dseg.nii.gz")
        src = nib.load(data["bids"] / stem.replace("_desc-synthsegT1w", "_T1w.nii.gz"))
        assert seg.shape == src.shape and abs(seg.affine - src.affine).max() < 1e-4
        meta = json.loads((out / f"{stem}_volumes.json").read_text())
        assert meta["ModelSHA256"] and meta["SourceFile"]["sha256"]
        assert len(pd.read_csv(out / f"{stem}_volumes.tsv", sep="\t")) == 1
        assert json.loads((out / f"{stem}_dseg.json").read_text())["Sources"]
        subject = stem.split("/")[0]
        assert (out / subject / "figures" / f"{Path(stem).name}_dseg.png").exists()
    assert (out / "sub-01.html").exists() and (out / "sub-02.html").exists()
    assert temporaries(out) == []
    assert_complete_files_only(out)
    # finished scans were not recomputed
    assert {p: Path(p).stat().st_mtime_ns for p in finished} == finished
    assert f"{len(done_before)} already done, {len(SCANS) - len(done_before)} to segment" in caplog.text
