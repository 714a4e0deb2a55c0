"""The example dataset builder (``synthseg-bids-example``), including extra subjects for scaling runs."""

from __future__ import annotations

import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from synthseg_bids.cli.example_data import main, make_example_dataset


def test_extra_subjects_have_one_distinct_t1w_each(tmp_path):
    bids = make_example_dataset(tmp_path / "bids", resolution_mm=4.0, shape=(20, 20, 20), n_subjects=4)
    scans = sorted(str(p.relative_to(bids)) for p in bids.rglob("*.nii.gz"))
    assert scans == ["sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz",
                     "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz", "sub-02/anat/sub-02_T1w.nii.gz",
                     "sub-03/anat/sub-03_T1w.nii.gz", "sub-04/anat/sub-04_T1w.nii.gz"]
    participants = pd.read_csv(bids / "participants.tsv", sep="\t")
    assert list(participants.participant_id) == ["sub-01", "sub-02", "sub-03", "sub-04"]
    assert participants.age.notna().all() and set(participants.sex) <= {"F", "M"}
    a, b = (nib.load(bids / f"sub-0{i}/anat/sub-0{i}_T1w.nii.gz") for i in (3, 4))
    assert np.allclose(np.diag(a.affine)[:3], 4.0)  # isotropic, unlike sub-02
    assert not np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))  # own noise and shift
    assert json.loads((bids / "sub-04/anat/sub-04_T1w.json").read_text())["RepetitionTime"] > 0
    validator = shutil.which("bids-validator-deno") or shutil.which("bids-validator")
    if validator:
        proc = subprocess.run([validator, str(bids), "--format", "json"], capture_output=True, text=True)
        errors = [i for i in json.loads(proc.stdout)["issues"]["issues"] if i["severity"] == "error"]
        assert errors == []


def test_fewer_than_two_subjects_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="n_subjects must be at least 2"):
        make_example_dataset(tmp_path / "a", n_subjects=1)
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "b"), "--subjects", "1"])
    assert exc.value.code == 2 and "--subjects must be at least 2" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
