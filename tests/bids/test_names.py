"""The BIDS layer's names: pybids parsing, derivative names from the project's path patterns, pairing keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthseg_bids.bids import derivative_path, match_key, parse_entities, scan_key, source_contrast
from synthseg_bids.bids.names import DERIVATIVE_PATTERNS


@pytest.mark.parametrize(
    ("source", "suffix", "extension", "datatype", "expected"),
    [
        ("/d/sub-01/ses-1/anat/sub-01_ses-1_acq-x_run-1_T2w.nii.gz", "dseg", ".nii.gz", "anat",
         "/o/sub-01/ses-1/anat/sub-01_ses-1_acq-x_run-1_desc-synthsegT2w_dseg.nii.gz"),
        ("/d/sub-01/ses-1/anat/sub-01_ses-1_acq-x_run-1_T2w.nii.gz", "dseg", ".png", "figures",
         "/o/sub-01/figures/sub-01_ses-1_acq-x_run-1_desc-synthsegT2w_dseg.png"),
        ("sub-02_FLAIR.nii", "volumes", ".tsv", "anat", "/o/sub-02/anat/sub-02_desc-synthsegFLAIR_volumes.tsv"),
        ("sub-02_run-01_PDw.nii.gz", "probseg", ".json", "anat",
         "/o/sub-02/anat/sub-02_run-01_desc-synthsegPDw_probseg.json"),
        ("sub-A1_ses-B2_ce-gd_rec-norm_run-3_echo-2_part-mag_chunk-1_T1w.nii.gz", "dseg", ".json", "anat",
         "/o/sub-A1/ses-B2/anat/sub-A1_ses-B2_ce-gd_rec-norm_run-3_echo-2_part-mag_chunk-1_desc-synthsegT1w_dseg.json"),
        # another tool's desc is replaced, not kept twice
        ("sub-01_desc-preproc_T1w.nii.gz", "dseg", ".nii.gz", "anat",
         "/o/sub-01/anat/sub-01_desc-synthsegT1w_dseg.nii.gz"),
    ],
)
def test_derivative_names_keep_every_entity_in_bids_order(source, suffix, extension, datatype, expected):
    assert derivative_path(source, "/o", suffix, extension, datatype=datatype).as_posix() == expected


def test_derivative_names_are_built_by_pybids_from_the_patterns():
    from bids.layout.writing import build_path

    entities = {"subject": "01", "session": "1", "desc": "synthsegT1w", "suffix": "dseg", "extension": ".nii.gz",
                "datatype": "anat"}
    expected = "sub-01/ses-1/anat/sub-01_ses-1_desc-synthsegT1w_dseg.nii.gz"
    assert build_path(entities, list(DERIVATIVE_PATTERNS)) == expected


def test_the_t1w_and_t2w_of_one_session_never_collide():
    t1 = derivative_path("sub-01_ses-1_T1w.nii.gz", "/o", "dseg", ".nii.gz")
    t2 = derivative_path("sub-01_ses-1_T2w.nii.gz", "/o", "dseg", ".nii.gz")
    assert t1 != t2 and t1.parent == t2.parent


@pytest.mark.parametrize("name", ["brain.nii.gz", "sub-01_foo-bar_T1w.nii.gz", "sub-01_run-1_ses-1_T1w.nii.gz",
                                  "sub-01_T1w-x.nii.gz", "sub-0 1_T1w.nii.gz", "sub-01_T1w", "sub-01_mp2rage_T1w.nii"])
def test_non_bids_names_are_refused_not_truncated(name):
    with pytest.raises(ValueError, match="not a BIDS file name"):
        parse_entities(name)


def test_unknown_suffix_or_extension_has_no_derivative_name():
    with pytest.raises(ValueError, match="no derivative name"):
        derivative_path("sub-01_T1w.nii.gz", "/o", "dseg", ".exe")
    with pytest.raises(ValueError, match="no derivative name"):
        derivative_path("sub-01_T1w.nii.gz", "/o", "mask", ".nii.gz")


def test_parse_entities_reads_the_file_name_only():
    assert parse_entities("/data/sub-99/anat/sub-01_ses-2_run-007_T2w.nii.gz") == {
        "subject": "01", "session": "2", "run": "007", "suffix": "T2w", "extension": ".nii.gz"}
    assert source_contrast(Path("x") / "sub-01_FLAIR.nii") == "FLAIR"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("sub-01_ses-a_acq-fast_run-2_T1w_synthseg.nii.gz", "sub-01_ses-a_acq-fast_run-2"),  # another tool's name
        ("sub-01_ses-a_run-2_dseg.nii.gz", "sub-01_ses-a_run-2"),
        ("sub-01_space-orig_desc-synthseg_dseg.mgz", "sub-01"),
        ("sub-01_ses-1_desc-synthsegT2w_dseg.nii.gz", "sub-01_ses-1"),
        ("case12_synthseg.nii.gz", "case12"),
        ("case12_dseg.nii", "case12"),
        ("case12.nii.gz", "case12"),
    ],
)
def test_match_key(name, key):
    assert match_key(name) == key


def test_scan_key_adds_the_contrast():
    assert scan_key("sub-01_ses-1_desc-synthsegT2w_dseg.nii.gz") == "sub-01_ses-1_T2w"
    assert scan_key("sub-01_ses-1_T2w_other.nii.gz", ("T1w", "T2w")) == "sub-01_ses-1_T2w"
    assert scan_key("sub-01_ses-1_dseg.nii.gz") == "sub-01_ses-1"
