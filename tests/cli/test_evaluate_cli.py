"""``synthseg-bids evaluate`` end to end on small generated NIfTI files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import make_toy_label_map, toy_affine

from synthseg_bids.cli.evaluate import build_parser
from synthseg_bids.cli.main import main as synthseg_bids
from synthseg_bids.core.io import save_image

LABELS = ["--labels", "2", "3", "41", "42", "16"]


@pytest.fixture
def folders(tmp_path):
    """Two subjects: references, a good method (1-voxel shift) and a worse one (3-voxel shift)."""
    for i in range(2):
        reference = make_toy_label_map((20, 20, 20), seed=i)
        save_image(reference, toy_affine(), tmp_path / "ref" / f"case{i}_dseg.nii.gz")
        save_image(np.roll(reference, 1, axis=0), toy_affine(), tmp_path / "good" / f"case{i}_synthseg.nii.gz")
        save_image(np.roll(reference, 3, axis=1), toy_affine(), tmp_path / "bad" / f"case{i}_synthseg.nii.gz")
    return tmp_path


def run(capsys, *args):
    code = synthseg_bids(["evaluate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_writes_tables_and_prints_mean_dice(folders, capsys):
    code, out, err = run(capsys, "--ref", folders / "ref", "--pred", folders / "good",
                         "--out", folders / "res" / "good", "--compare", folders / "bad", *LABELS)
    assert code == 0, err
    assert "Left-Cerebral-White-Matter" in out and "Brain-Stem" in out and "2 subject(s)" in out
    scores = pd.read_csv(folders / "res" / "good_scores.tsv", sep="\t")
    assert len(scores) == 2 * 5 * 4  # subjects x structures x metrics
    # A 1-voxel shift of a structure away from the volume edge: Hausdorff distance 1 mm.
    assert scores[scores["metric"] == "hd"]["value"].eq(1.0).all()
    summary = pd.read_csv(folders / "res" / "good_summary.tsv", sep="\t")
    assert "hd95_mean" in summary.columns
    comparison = pd.read_csv(folders / "res" / "good_comparison.tsv", sep="\t")
    assert set(comparison["metric"]) == {"dice", "hd", "hd95", "msd"}
    assert (comparison[comparison["metric"] == "dice"]["median_a"] >
            comparison[comparison["metric"] == "dice"]["median_b"]).all()


def test_single_files_and_custom_percentile(folders, capsys):
    code, _, err = run(capsys, "--ref", folders / "ref" / "case0_dseg.nii.gz",
                       "--pred", folders / "good" / "case0_synthseg.nii.gz",
                       "--out", folders / "one", "--percentile", "50", *LABELS)
    assert code == 0, err
    assert set(pd.read_csv(folders / "one_scores.tsv", sep="\t")["metric"]) == {"dice", "hd", "hd50", "msd"}


def replace(path, data, affine):
    path.unlink()
    nib.save(nib.Nifti1Image(data, affine), str(path))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("shape", "shape (20, 20, 19) differs from reference"),
        ("affine", "affine differs from that of reference"),
        ("float", "is not a label map: it has non-integer values"),
        ("missing", "no prediction with match key 'case1'"),
    ],
)
def test_bad_input_prints_one_error_line_and_exits_1(folders, capsys, damage, problem):
    bad = folders / "good" / "case1_synthseg.nii.gz"
    reference = make_toy_label_map((20, 20, 20), seed=1)
    if damage == "shape":
        replace(bad, reference[:, :, :19], toy_affine())
    elif damage == "affine":
        replace(bad, reference, toy_affine(1.2))
    elif damage == "float":
        replace(bad, reference.astype(np.float32) + 0.5, toy_affine())
    else:
        bad.unlink()
    code, out, err = run(capsys, "--ref", folders / "ref", "--pred", folders / "good", "--out", folders / "x", *LABELS)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synthseg-bids evaluate: error: ")
    assert problem in lines[0]
    expected_file = folders / "ref" / "case1_dseg.nii.gz" if damage == "missing" else bad
    assert str(expected_file) in lines[0]
    assert not list(folders.glob("x_*.tsv"))


def test_missing_path_exits_1(folders, capsys):
    code, _, err = run(capsys, "--ref", folders / "nowhere", "--pred", folders / "good", "--out", folders / "x")
    assert code == 1 and f"{folders / 'nowhere'}: file or folder not found" in err


@pytest.mark.parametrize("args", [["--percentile", "150"], ["--labels", "2", "2"], ["--correction", "bonf"]])
def test_usage_errors_exit_2(folders, capsys, args):
    with pytest.raises(SystemExit) as info:
        synthseg_bids(["evaluate", "--ref", str(folders / "ref"), "--pred", str(folders / "good"),
                       "--out", str(folders / "x"), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("synthseg-bids evaluate: error: ")  # no usage block


def test_parser_defaults():
    args = build_parser().parse_args(["--ref", "r", "--pred", "p", "--out", "o"])
    assert args.percentile == 95.0 and args.labels is None and args.compare is None and args.correction == "holm"
