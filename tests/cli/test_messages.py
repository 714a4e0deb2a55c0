"""The command line's own words: one-line usage errors, unknown labels, progress and total times.

Each message is checked against what it must say, built from the test's own inputs (the
folders it made, the times it set), not from the code's output.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from synthseg_bids.cli import run
from synthseg_bids.cli.example_data import main as example_main
from synthseg_bids.cli.main import main
from synthseg_bids.cli.parser import parse_args
from synthseg_bids.workflows.base import scan_workflow_name


@pytest.fixture
def bids(tmp_path) -> Path:
    """Folders only: sub-01 with sessions 1 and 2, sub-02 with session 3."""
    root = tmp_path / "bids"
    for sub, ses in (("01", "1"), ("01", "2"), ("02", "3")):
        (root / f"sub-{sub}" / f"ses-{ses}" / "anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    return root


def _exit_and_stderr(capsys, argv) -> tuple[int, list[str]]:
    try:
        code = main(argv)
    except SystemExit as usage:  # the tool subcommands exit from argparse; the BIDS-App returns its status
        code = usage.code
    return code, capsys.readouterr().err.strip().splitlines()


# -- usage errors: one line, usage only when nothing was given -------------------------------
@pytest.mark.parametrize("argv, prog, problem", [
    (["{bids}", "{out}", "participant", "--nprocs", "0"], "synthseg-bids", "argument --nprocs"),
    (["{bids}", "{out}"], "synthseg-bids", "the following arguments are required: analysis_level"),
    (["{bids}", "{out}", "everything"], "synthseg-bids", "argument analysis_level: invalid choice"),
    (["evaluate", "--ref", "r"], "synthseg-bids evaluate", "the following arguments are required: --pred, --out"),
    (["train", "--bogus"], "synthseg-bids train", "the following arguments are required: --out"),
    (["generate", "--n", "x"], "synthseg-bids generate", "argument --n: not an integer: 'x'"),
    (["evaluate-model", "--out", "o", "--bogus"], "synthseg-bids evaluate-model", "unrecognized arguments: --bogus"),
    (["export-model"], "synthseg-bids export-model", "the following arguments are required"),
    (["segment", "--i", "a.nii.gz", "--o", "b.nii.gz", "--shifts", "0"], "synthseg-bids segment",
     "argument --shifts: must be >= 1, got 0"),
])
def test_usage_errors_are_one_line(bids, tmp_path, capsys, argv, prog, problem):
    argv = [a.format(bids=bids, out=tmp_path / "out") for a in argv]
    code, err = _exit_and_stderr(capsys, argv)
    usage_shown = argv[-1] == "export-model"  # the subcommand given no arguments at all
    assert code == 2
    assert err[-1].startswith(f"{prog}: error: ") and problem in err[-1]
    assert len(err) == 1 or (usage_shown and err[0].startswith(f"usage: {prog} "))


def test_no_arguments_show_the_usage_then_the_error(capsys):
    code, err = _exit_and_stderr(capsys, [])
    assert code == 2
    assert err[0].startswith("usage: synthseg-bids ") and err[-1].startswith("synthseg-bids: error: ")


def test_example_command_has_its_own_name(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        example_main(["--help"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("usage: synthseg-bids-example ")
    with pytest.raises(SystemExit) as info:
        example_main([str(tmp_path / "x"), "--resolution", "0"])
    assert info.value.code == 2
    expected = "synthseg-bids-example: error: --resolution must be positive, got 0.0"
    assert capsys.readouterr().err.strip().splitlines() == [expected]


# -- unknown sessions are reported as unknown participants are --------------------------------
@pytest.mark.parametrize("extra, message", [
    (["--participant-label", "03"], "participant label(s) not found in {bids}: 03 (available: 01, 02)"),
    (["--session-label", "4", "ses-1"], "session label(s) not found in {bids}: 4 (available: 1, 2, 3)"),
    (["--participant-label", "01", "--session-label", "3"],
     "session label(s) not found in {bids} for participant(s) 01: 3 (available: 1, 2)"),
])
def test_unknown_labels_list_what_is_there(bids, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as info:
        parse_args([str(bids), str(tmp_path / "out"), "participant", *extra])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"synthseg-bids: error: {message.format(bids=bids)}"]


def test_known_sessions_are_accepted(bids, tmp_path):
    config = parse_args([str(bids), str(tmp_path / "out"), "participant", "--participant-label", "02",
                         "--session-label", "ses-3"])
    assert config.participant_label == ("02",) and config.session_label == ("3",)


# -- progress lines under parallelism ------------------------------------------------------------
def test_progress_lines_give_each_scan_time_and_the_wall_time_between_completions(monkeypatch, caplog):
    """Two scans overlapping in time (two processes): scan times overlap, the gaps add up to the wall time."""
    scans = ["/data/sub-01/anat/sub-01_T1w.nii.gz", "/data/sub-02/anat/sub-02_T1w.nii.gz"]
    clock = iter([100.0, 100.0, 101.0, 110.0, 112.0])  # tracker made; A starts; B starts; A ends; B ends
    monkeypatch.setattr(run.time, "perf_counter", lambda: next(clock))
    tracker = run._ScanTracker(scans, Path("/data"), last_sink="ds_last")

    def node(scan, name):
        return SimpleNamespace(_hierarchy=f"synthseg_bids_wf.{scan_workflow_name(scan)}", name=name)

    with caplog.at_level(logging.INFO, logger="synthseg_bids.cli"):
        tracker(node(scans[0], "synthseg"), "start")
        tracker(node(scans[1], "synthseg"), "start")
        tracker(node(scans[0], "ds_last"), "end")
        tracker(node(scans[1], "ds_last"), "end")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "[1/2] sub-01/anat/sub-01_T1w.nii.gz done in 10.0 s, 10.0 s since the workflow started (eta 10.0 s)",
        "[2/2] sub-02/anat/sub-02_T1w.nii.gz done in 11.0 s, 2.0 s after the previous scan (eta 0.0 s)",
    ]
    gaps = [float(re.search(r", ([0-9.]+) s ", line).group(1)) for line in lines]
    assert sum(gaps) == 112.0 - 100.0  # the wall time of the run, which the scans' own times (21 s) exceed
