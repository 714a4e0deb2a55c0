"""Folder evaluation: pairing by name, validation, tables, method comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import make_toy_label_map, toy_affine
from scipy import stats as scipy_stats

from synthseg_bids.core.evaluation import (
    compare_methods,
    evaluate_folders,
    match_key,
    match_label_maps,
    write_evaluation_tables,
)
from synthseg_bids.core.io import ImageError, save_image

LABELS = [2, 3, 4, 16, 41, 258]  # 258 is not in the SynthSeg table


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("sub-01_ses-a_T1w_synthseg.nii.gz", "sub-01_ses-a_T1w"),  # no BIDS here: synthseg_bids.bids.match_key
        ("case12_synthseg.nii.gz", "case12"),
        ("case12_synthseg_seg.nii.gz", "case12_synthseg"),
        ("case12_dseg.nii", "case12"),
        ("case12.nii.gz", "case12"),
    ],
)
def test_match_key(name, key):
    assert match_key(name) == key


def write_pair_folders(tmp_path, n=3, seed=0):
    """References sub-XX_dseg and predictions sub-XX_synthseg (shifted copies), nested."""
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    arrays = {}
    for i in range(n):
        reference = make_toy_label_map((20, 20, 20), seed=seed + i)
        prediction = np.roll(reference, i % 2 + 1, axis=i % 3)
        save_image(reference, toy_affine(1.5), ref_dir / f"sub-{i:02d}" / "anat" / f"sub-{i:02d}_dseg.nii.gz")
        save_image(prediction, toy_affine(1.5), pred_dir / f"sub-{i:02d}_synthseg.nii.gz")
        arrays[f"sub-{i:02d}"] = (reference, prediction)
    return ref_dir, pred_dir, arrays


def test_evaluate_folders_scores_every_pair_like_medpy(tmp_path):
    binary = pytest.importorskip("medpy.metric.binary")
    ref_dir, pred_dir, arrays = write_pair_folders(tmp_path)
    scores = evaluate_folders(ref_dir, pred_dir, LABELS, percentile=90)
    assert list(scores.columns) == ["subject", "structure", "label", "metric", "value"]
    assert sorted(scores["subject"].unique()) == sorted(arrays)
    assert set(scores["metric"]) == {"dice", "hd", "hd90", "msd"}
    names = dict(zip(scores["label"], scores["structure"]))
    assert names[2] == "Left-Cerebral-White-Matter" and names[16] == "Brain-Stem" and names[258] == "label-258"
    spacing = (1.5, 1.5, 1.5)
    values = scores.set_index(["subject", "label", "metric"])["value"]
    for subject, (reference, prediction) in arrays.items():
        for label in LABELS:
            ref, pred = reference == label, prediction == label
            assert values[subject, label, "dice"] == pytest.approx(binary.dc(pred, ref), rel=1e-9)
            assert values[subject, label, "hd"] == pytest.approx(binary.hd(pred, ref, spacing), rel=1e-9)
            assert values[subject, label, "msd"] == pytest.approx(binary.assd(pred, ref, spacing), rel=1e-9)


def test_default_labels_are_the_32_structures_and_missing_ones_are_nan(tmp_path):
    ref_dir, pred_dir, _ = write_pair_folders(tmp_path, n=1)
    scores = evaluate_folders(ref_dir, pred_dir)
    assert scores["label"].nunique() == 32 and 0 not in set(scores["label"])
    hippocampus = scores[scores["label"] == 17].set_index("metric")["value"]  # in neither map
    assert hippocampus.isna().all()


def test_written_tables_read_back_and_summary_matches_numpy(tmp_path):
    ref_dir, pred_dir, _ = write_pair_folders(tmp_path)
    scores = evaluate_folders(ref_dir, pred_dir, [*LABELS, 17])  # 17: in no map
    scores_path, summary_path = write_evaluation_tables(scores, tmp_path / "out" / "run1")
    assert scores_path.name == "run1_scores.tsv" and summary_path.name == "run1_summary.tsv"
    back = pd.read_csv(scores_path, sep="\t", na_values="n/a")
    pd.testing.assert_frame_equal(back, scores, check_dtype=False)
    summary = pd.read_csv(summary_path, sep="\t", na_values="n/a").set_index("label")
    for label in LABELS:
        dice = scores[(scores["label"] == label) & (scores["metric"] == "dice")]["value"].to_numpy()
        assert summary.loc[label, "dice_mean"] == pytest.approx(np.mean(dice))
        assert summary.loc[label, "dice_std"] == pytest.approx(np.std(dice, ddof=1))
        assert summary.loc[label, "dice_median"] == pytest.approx(np.median(dice))
        assert summary.loc[label, "dice_n"] == 3
    assert np.isnan(summary.loc[17, "hd_mean"]) and summary.loc[17, "hd_n"] == 0 and summary.loc[17, "dice_n"] == 0
    assert not list(tmp_path.joinpath("out").glob(".*"))  # no temporary files left


def test_unmatched_and_duplicate_names_are_errors_naming_the_file(tmp_path):
    ref_dir, pred_dir, _ = write_pair_folders(tmp_path, n=2)
    extra = pred_dir / "sub-07_synthseg.nii.gz"
    save_image(make_toy_label_map((20, 20, 20)), toy_affine(), extra)
    with pytest.raises(ImageError, match="no reference with match key 'sub-07'") as info:
        match_label_maps(ref_dir, pred_dir)
    assert info.value.path == extra
    extra.unlink()
    duplicate = pred_dir / "sub-01_seg.nii.gz"
    save_image(make_toy_label_map((20, 20, 20)), toy_affine(), duplicate)
    with pytest.raises(ImageError, match="same match key 'sub-01'"):
        match_label_maps(ref_dir, pred_dir)
    with pytest.raises(ImageError, match="not found"):
        match_label_maps(tmp_path / "nope", pred_dir)


def test_shape_and_affine_mismatch_name_both_files(tmp_path):
    ref_dir, pred_dir, _ = write_pair_folders(tmp_path, n=1)
    prediction = pred_dir / "sub-00_synthseg.nii.gz"
    save_image(make_toy_label_map((20, 20, 21)), toy_affine(1.5), prediction)
    with pytest.raises(ImageError, match=r"shape \(20, 20, 21\) differs from reference .*sub-00_dseg"):
        evaluate_folders(ref_dir, pred_dir, LABELS)
    save_image(make_toy_label_map((20, 20, 20)), toy_affine(1.0), prediction)
    with pytest.raises(ImageError, match="affine differs from that of reference .*sub-00_dseg") as info:
        evaluate_folders(ref_dir, pred_dir, LABELS)
    assert info.value.path == prediction


def tidy(values, metric="dice"):
    """Tidy scores from a subjects x structures array."""
    subjects = [f"sub-{i}" for i in range(values.shape[0])]
    return pd.DataFrame(
        [
            {"subject": s, "structure": f"S{j}", "label": j, "metric": metric, "value": values[i, j]}
            for i, s in enumerate(subjects)
            for j in range(values.shape[1])
        ]
    )


def test_compare_methods_runs_wilcoxon_per_structure():
    rng = np.random.default_rng(5)
    a = rng.uniform(0.6, 0.9, (10, 3))
    b = a - rng.normal([0.1, 0.0, 0.0], 0.03, (10, 3))
    table = compare_methods(tidy(a), tidy(b).sample(frac=1, random_state=1), "dice", correction="fdr_bh")
    assert table["metric"].eq("dice").all() and table["structure"].tolist() == ["S0", "S1", "S2"]
    for j in range(3):
        assert table["p"][j] == pytest.approx(scipy_stats.wilcoxon(a[:, j], b[:, j]).pvalue, rel=1e-12)
    assert table["significant"][0] and table["cohens_d"][0] > 0
    with pytest.raises(ValueError, match="no 'hd95' scores"):
        compare_methods(tidy(a), tidy(b), "hd95")
