"""Checks of the example dataset's derivatives written by an image (shared by the image tests)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import USER

from synthseg_bids.bids.dataset import find_validator


def label_maps(folder: Path) -> dict[str, nib.Nifti1Image]:
    return {str(p.relative_to(folder)): nib.load(p) for p in sorted(folder.rglob("*_dseg.nii.gz"))}


def validator_errors(folder: Path) -> list[str]:
    """Errors of the BIDS validator (``bids-validator-deno``, a dependency of the package) on ``folder``."""
    validator = find_validator()
    if validator is None:
        pytest.skip("bids-validator-deno not installed (pip install bids-validator-deno)")
    proc = subprocess.run([validator, str(folder), "--format", "json"], capture_output=True, text=True)
    issues = json.loads(proc.stdout)["issues"]["issues"]
    return [f"{i['code']} {i.get('location')}" for i in issues if i["severity"] == "error"]


def assert_same_label_maps(out: Path, reference: Path) -> None:
    ours, theirs = label_maps(out), label_maps(reference)
    assert len(theirs) == 4 and sorted(ours) == sorted(theirs)
    for name, image in theirs.items():
        assert np.array_equal(np.asanyarray(ours[name].dataobj), np.asanyarray(image.dataobj)), name
        assert np.array_equal(ours[name].affine, image.affine), name


def assert_clean_log(log: str) -> None:
    """No traceback, no error, and no library complaining about an unwritable cache folder."""
    for text in ("Traceback", "synthseg-bids: error", "not a writable directory", "Permission denied"):
        assert text not in log, log[-3000:]


def assert_owned_by_user(out: Path) -> None:
    uid, gid = (int(n) for n in USER.split(":"))
    wrong = [str(p) for p in [out, *out.rglob("*")] if (p.lstat().st_uid, p.lstat().st_gid) != (uid, gid)]
    assert not wrong, wrong[:5]
