"""The input dataset: the validator is found next to the running Python; scan selection."""

from __future__ import annotations

import json
import os
import stat
import sys

import nibabel as nib
import numpy as np
import pytest

from synthseg_bids.bids import BIDSError, collect_scans, find_validator, validate_dataset
from synthseg_bids.bids.dataset import VALIDATOR_NAMES


def _executable(path, text="#!/bin/sh\nexit 0\n"):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_validator_next_to_the_interpreter_wins_over_path(tmp_path, monkeypatch):
    env_bin, path_bin = tmp_path / "venv" / "bin", tmp_path / "elsewhere"
    env_bin.mkdir(parents=True)
    path_bin.mkdir()
    mine = _executable(env_bin / VALIDATOR_NAMES[0])
    _executable(path_bin / VALIDATOR_NAMES[0])
    monkeypatch.setattr(sys, "executable", str(env_bin / "python3"))
    monkeypatch.setenv("PATH", str(path_bin))
    assert find_validator() == str(mine)
    mine.unlink()
    assert find_validator() == str(path_bin / VALIDATOR_NAMES[0])
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert find_validator() is None
    with pytest.raises(BIDSError, match="bids-validator-deno.*is not installed.*--skip-bids-validation"):
        validate_dataset(tmp_path)


def test_validator_errors_are_returned(tmp_path, monkeypatch):
    report = {"issues": {"issues": [{"code": "NOT_INCLUDED", "location": "/x.txt", "severity": "error"},
                                    {"code": "README_FILE_MISSING", "severity": "warning"}]}}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / VALIDATOR_NAMES[0], f"#!/bin/sh\necho '{json.dumps(report)}'\nexit 16\n")
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python3"))
    assert validate_dataset(tmp_path) == ["NOT_INCLUDED /x.txt"]


def _scan(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), path)


def test_collect_scans_selects_anat_scans_and_skips_derivatives_and_bad_names(tmp_path, caplog):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    for name in ("sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_acq-fast_T2w.nii.gz",
                 "sub-01/anat/sub-01_dseg.nii.gz", "sub-01/anat/sub-01_desc-x_T1w.nii.gz",
                 "sub-02/ses-1/anat/sub-02_ses-1_FLAIR.nii", "sub-02/ses-1/func/sub-02_ses-1_task-x_bold.nii.gz",
                 "sub-02/ses-1/anat/sub-02_ses-1_foo-bar_T1w.nii.gz",
                 "derivatives/other/sub-01/anat/sub-01_T1w.nii.gz"):
        _scan(bids / name)
    scans = collect_scans(bids, validate=False)
    assert {s: [os.path.relpath(p, bids) for p in v] for s, v in scans.items()} == {
        "01": ["sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_acq-fast_T2w.nii.gz"],
        "02": ["sub-02/ses-1/anat/sub-02_ses-1_FLAIR.nii"],
    }
    assert "sub-02_ses-1_foo-bar_T1w.nii.gz: not a BIDS file name" in caplog.text
    assert not (bids / ".pybids").exists() and not list(bids.glob("*.db"))  # pybids wrote nothing here
