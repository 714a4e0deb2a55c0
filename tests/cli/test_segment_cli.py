"""``synthseg-bids segment`` (SynthSeg's command line) end to end with a tiny random-weight model.

Scans are 28^3 toy heads; the smallest network input is lowered to 32 voxels (the
default, 128, would make every scan cost ~40 s on a 2-core CPU) by wrapping
``settings_from_args``; everything else is the real command.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import labels_of, run_main, toy_head

import synthseg_bids.cli.segment as segment_cli
from synthseg_bids.cli.main import main as synthseg_bids
from synthseg_bids.core.io import save_image
from synthseg_bids.core.labels import default_label_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tiny_model) -> Path:
    return tiny_model


@pytest.fixture(autouse=True)
def small_network_input(monkeypatch):
    original = segment_cli.settings_from_args

    def settings(args):
        made = original(args)
        return dataclasses.replace(made, min_size=min(made.min_size, 32))

    monkeypatch.setattr(segment_cli, "settings_from_args", settings)


AFFINE = np.array([[-1.1, 0, 0, 15], [0, 0, 1.0, -14], [0, -1.0, 0, 16], [0, 0, 0, 1]])  # oblique-free LSP, 1.1 mm


def write_scan(path: Path, seed=0, shape=(28, 28, 28), data=None, affine=AFFINE) -> Path:
    return save_image(toy_head(shape, seed) if data is None else data, affine, path)


def run(capsys, *args) -> tuple[int, str]:
    return run_main(capsys, "segment", *args)


# -- forms ----------------------------------------------------------------------------


def test_single_scan_to_file_and_to_folder(tmp_path, model, capsys):
    scan = write_scan(tmp_path / "sub-01_T1w.mgz")
    code, err = run(capsys, "--i", scan, "--o", tmp_path / "seg.nii.gz", "--model", model, "--cpu")
    assert code == 0, err
    out = nib.load(tmp_path / "seg.nii.gz")
    assert out.shape == (28, 28, 28) and np.allclose(out.affine, AFFINE, atol=1e-5)
    assert set(np.unique(out.dataobj)) <= set(default_label_table().values.tolist())
    assert "[1/1] sub-01_T1w.mgz" in err and "eta" in err
    # an output without image suffix is a folder receiving <name>_synthseg<ext>, as in SynthSeg
    code, err = run(capsys, "--i", scan, "--o", tmp_path / "segs", "--model", model, "--cpu")
    assert code == 0, err
    np.testing.assert_array_equal(labels_of(tmp_path / "segs" / "sub-01_T1w_synthseg.mgz"), np.asarray(out.dataobj))


def test_folder_with_volumes_qc_posteriors_resampled(tmp_path, model, capsys):
    from synthseg_bids.inference import InferenceSettings, Segmenter

    for i, suffix in enumerate([".nii.gz", ".nii", ".mgz"]):
        write_scan(tmp_path / "in" / f"sub-0{i}_T1w{suffix}", seed=i)
    (tmp_path / "in" / "notes.txt").write_text("not a scan")
    (tmp_path / "in" / "nested").mkdir()
    write_scan(tmp_path / "in" / "nested" / "sub-09_T1w.nii.gz")
    # a row of an earlier run is kept
    pd.DataFrame({"scan": ["old"], "CSF": [1.0], "total intracranial": [2.0]}).to_csv(tmp_path / "vol.csv", index=False)

    code, err = run(capsys, "--i", tmp_path / "in", "--o", tmp_path / "out", "--vol", tmp_path / "vol.csv",
                    "--qc", tmp_path / "qc.csv", "--post", tmp_path / "post", "--resample", tmp_path / "res",
                    "--model", model, "--cpu")
    assert code == 0, err
    names = ["sub-00_T1w_synthseg.nii.gz", "sub-01_T1w_synthseg.nii", "sub-02_T1w_synthseg.mgz"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names
    assert nib.load(tmp_path / "post" / "sub-01_T1w_posteriors.nii").shape == (28, 28, 28, 33)
    resampled = nib.load(tmp_path / "res" / "sub-02_T1w_resampled.mgz")
    assert np.allclose(np.abs(resampled.affine[:3, :3]), np.eye(3))  # 1 mm, RAS
    assert 0 <= resampled.get_fdata().min() and resampled.get_fdata().max() <= 1
    assert "[3/3] sub-02_T1w.mgz" in err and "3 segmented, 0 skipped, 0 failed" in err

    volumes = pd.read_csv(tmp_path / "vol.csv")
    assert list(volumes["scan"]) == ["old", "sub-00_T1w", "sub-01_T1w", "sub-02_T1w"]
    table = default_label_table()
    structures = [name for name, value in zip(table.names, table.values) if value != 0]
    assert list(volumes.columns) == ["scan", "CSF", "total intracranial"] + [s for s in structures if s != "CSF"]
    segmenter = Segmenter(model, InferenceSettings(device="cpu", min_size=32))
    expected = segmenter.segment(tmp_path / "in" / "sub-01_T1w.nii").volumes
    assert list(expected) == structures + ["total intracranial"]
    row = volumes.set_index("scan").loc["sub-01_T1w"]
    for name, value in expected.items():
        assert row[name] == round(value, 3), name  # 3 decimals, as mri_synthseg and the BIDS tables

    qc = pd.read_csv(tmp_path / "qc.csv")
    assert list(qc["scan"]) == ["sub-00_T1w", "sub-01_T1w", "sub-02_T1w"]
    assert "brainstem confidence" in qc.columns and "brainstem flip dice" in qc.columns
    assert qc.columns[-1] == "flag" and qc["flag"].dtype == bool  # written true/false


def test_lists(tmp_path, model, capsys):
    scans = [write_scan(tmp_path / "a" / f"s{i}.nii.gz", seed=i) for i in range(2)]
    outputs = [tmp_path / "x" / "first_dseg.nii.gz", tmp_path / "y" / "second_dseg.mgz"]
    (tmp_path / "in.txt").write_text(f"# inputs\n{scans[0]}\n\n  {scans[1]}  \n")
    (tmp_path / "out.txt").write_text("\n".join(map(str, outputs)) + "\n")
    code, err = run(capsys, "--i", tmp_path / "in.txt", "--o", tmp_path / "out.txt", "--model", model, "--cpu",
                    "--vol", tmp_path / "v.csv")
    assert code == 0, err
    assert all(p.is_file() for p in outputs)
    assert list(pd.read_csv(tmp_path / "v.csv")["scan"]) == ["s0", "s1"]


def test_list_counts_and_forms_must_match(tmp_path, model, capsys):
    scans = [write_scan(tmp_path / f"s{i}.nii.gz", seed=i) for i in range(2)]
    (tmp_path / "in.txt").write_text("\n".join(map(str, scans)))
    (tmp_path / "out.txt").write_text(str(tmp_path / "only_one.nii.gz"))
    code, err = run(capsys, "--i", tmp_path / "in.txt", "--o", tmp_path / "out.txt", "--model", model)
    assert code == 2 and "lists 1 path(s) but --i lists 2 scan(s)" in err
    code, err = run(capsys, "--i", tmp_path / "in.txt", "--o", tmp_path / "folder", "--model", model)
    assert code == 2 and "must be a .txt list too" in err
    code, err = run(capsys, "--i", tmp_path, "--o", tmp_path / "seg.nii.gz", "--model", model)
    assert code == 2 and "must be a folder, not a file" in err
    code, err = run(capsys, "--i", scans[0], "--o", tmp_path / "out.txt", "--model", model)
    assert code == 2 and "needs a .txt list input" in err
    code, err = run(capsys, "--i", scans[0], "--o", tmp_path / "o.nii.gz", "--vol", tmp_path / "t.csv",
                    "--qc", tmp_path / "t.csv", "--model", model)
    assert code == 2 and "name the same file" in err
    code, err = run(capsys, "--i", tmp_path / "missing.nii.gz", "--o", tmp_path / "o.nii.gz", "--model", model)
    assert code == 1 and "missing.nii.gz: file not found" in err
    assert not (tmp_path / "o.nii.gz").exists() and not (tmp_path / "folder").exists()


# -- options ----------------------------------------------------------------------------


def test_ct_clips_intensities(tmp_path, model, capsys):
    raw = toy_head() * 20 - 300  # -300 .. 1700 HU-like values, far above 80
    write_scan(tmp_path / "raw.nii.gz", data=raw)
    write_scan(tmp_path / "clipped.nii.gz", data=np.clip(raw, 0, 80))
    for name in ("raw", "clipped"):
        code, err = run(capsys, "--i", tmp_path / f"{name}.nii.gz", "--o", tmp_path / f"{name}_seg.nii.gz",
                        "--model", model, "--cpu", "--ct", "--vol", tmp_path / "v.csv")
        assert code == 0, err
    np.testing.assert_array_equal(labels_of(tmp_path / "raw_seg.nii.gz"), labels_of(tmp_path / "clipped_seg.nii.gz"))
    volumes = pd.read_csv(tmp_path / "v.csv").set_index("scan")
    pd.testing.assert_series_equal(volumes.loc["raw"], volumes.loc["clipped"], check_names=False)


def test_crop_keeps_the_input_grid(tmp_path, model, capsys, monkeypatch):
    seen = spy_settings(monkeypatch)
    affine = np.array([[0.9, 0.1, 0, -20], [0, 1.2, 0, -25], [0, 0, 1.0, -18], [0, 0, 0, 1]])
    scan = write_scan(tmp_path / "big.nii.gz", shape=(44, 40, 36), affine=affine)
    code, err = run(capsys, "--i", scan, "--o", tmp_path / "seg.nii.gz", "--model", model, "--cpu", "--crop", "16")
    assert code == 0, err
    out = nib.load(tmp_path / "seg.nii.gz")
    assert out.shape == (44, 40, 36) and np.allclose(out.affine, affine, atol=1e-5)
    assert seen[-1].crop == (16, 16, 16)
    assert np.count_nonzero(np.asarray(out.dataobj)) <= 20**3  # nothing segmented outside the ~16 mm box
    code, err = run(capsys, "--i", scan, "--o", tmp_path / "seg2.nii.gz", "--model", model, "--crop", "16", "16")
    assert code == 2 and "1 or 3 sizes" in err


def spy_settings(monkeypatch) -> list:
    """Record the settings every Segmenter of the command is built with."""
    import synthseg_bids.inference as inference
    import synthseg_bids.inference.segmenter as segmenter

    seen = []

    class Spy(inference.Segmenter):
        def __init__(self, model, settings):
            seen.append(settings)
            super().__init__(model, settings)

    monkeypatch.setattr(inference, "Segmenter", Spy)
    monkeypatch.setattr(segmenter, "Segmenter", Spy)  # the command builds it through ModelChoice.load
    return seen


def test_fast_runs_without_flip_augmentation(tmp_path, model, capsys, monkeypatch):
    seen = spy_settings(monkeypatch)
    scan = write_scan(tmp_path / "s.nii.gz")
    code, err = run(capsys, "--i", scan, "--o", tmp_path / "seg.nii.gz", "--model", model, "--cpu", "--fast",
                    "--qc", tmp_path / "qc.csv")
    assert code == 0, err
    assert seen[-1].flip is False and seen[-1].postprocess == "brain" and seen[-1].device == "cpu"
    columns = pd.read_csv(tmp_path / "qc.csv").columns
    assert any(c.endswith(" confidence") for c in columns)
    assert not any(c.endswith(" flip dice") for c in columns)  # no flipped prediction was made
    parsed = segment_cli.build_parser().parse_args(["--i", "a", "--o", "b"])
    assert segment_cli.settings_from_args(parsed).flip is True


def test_skip_existing_then_overwrite(tmp_path, model, capsys, monkeypatch):
    for i in range(2):
        write_scan(tmp_path / "in" / f"s{i}.nii.gz", seed=i)
    args = ["--i", tmp_path / "in", "--o", tmp_path / "out", "--model", model, "--cpu", "--vol", tmp_path / "v.csv"]
    assert run(capsys, *args)[0] == 0
    outputs = sorted((tmp_path / "out").iterdir())
    before = [p.stat().st_mtime_ns for p in outputs + [tmp_path / "v.csv"]]
    seen = spy_settings(monkeypatch)
    code, err = run(capsys, *args)
    assert code == 0 and "use --overwrite" in err
    assert [p.stat().st_mtime_ns for p in outputs + [tmp_path / "v.csv"]] == before
    assert seen == []  # not even the model was loaded

    # a new scan: only it is segmented, the others are reported as skipped
    write_scan(tmp_path / "in" / "s2.nii.gz", seed=2)
    code, err = run(capsys, *args)
    assert code == 0 and err.count("skipped (outputs exist") == 2 and "[3/3] s2.nii.gz" in err
    assert [p.stat().st_mtime_ns for p in outputs] == before[:2]
    assert len(pd.read_csv(tmp_path / "v.csv")) == 3

    for p in outputs:
        os.utime(p, ns=(1, 1))
    code, err = run(capsys, *args, "--overwrite")
    assert code == 0 and "3 segmented" in err
    assert all(p.stat().st_mtime_ns != 1 for p in outputs)
    assert len(pd.read_csv(tmp_path / "v.csv")) == 3


def test_outputs_inside_the_input_folder_are_not_inputs(tmp_path, model, capsys):
    write_scan(tmp_path / "s0.nii.gz")
    assert run(capsys, "--i", tmp_path, "--o", tmp_path, "--model", model, "--cpu")[0] == 0
    assert (tmp_path / "s0_synthseg.nii.gz").is_file()
    code, err = run(capsys, "--i", tmp_path, "--o", tmp_path, "--model", model, "--cpu")
    assert code == 0 and "all 1 scan(s) have their outputs already" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0.nii.gz", "s0_synthseg.nii.gz"]


def test_folder_scans_are_read_once_and_segmented_ahead(tmp_path, model, capsys, monkeypatch):
    """Each next scan is segmented ahead (in the background) while the current one is written; every scan is
    read and pre-processed once (--resample included), and the outputs are those of separate segmentations."""
    from synthseg_bids.core.io import load_image
    from synthseg_bids.inference import InferenceSettings, Segmenter, prepare_scan

    for i in range(3):
        write_scan(tmp_path / "in" / f"s{i}.nii.gz", seed=i)
    ahead, prepared = [], []
    segment_ahead, prepare = Segmenter.segment_ahead, Segmenter.prepare

    def spy_ahead(self, scan, **options):
        ahead.append((Path(scan).name, options))
        return segment_ahead(self, scan, **options)

    def spy_prepare(self, scan, **options):
        prepared.append(Path(scan).name)
        return prepare(self, scan, **options)

    monkeypatch.setattr(Segmenter, "segment_ahead", spy_ahead)
    monkeypatch.setattr(Segmenter, "prepare", spy_prepare)
    code, err = run(capsys, "--i", tmp_path / "in", "--o", tmp_path / "out", "--resample", tmp_path / "res",
                    "--model", model, "--cpu")
    assert code == 0, err
    options = {"posteriors": False, "resampled": True}
    assert ahead == [("s1.nii.gz", options), ("s2.nii.gz", options)]
    assert sorted(prepared) == ["s0.nii.gz", "s1.nii.gz", "s2.nii.gz"]
    monkeypatch.undo()
    reference = Segmenter(model, InferenceSettings(device="cpu", min_size=32))
    for i in range(3):
        scan = tmp_path / "in" / f"s{i}.nii.gz"
        np.testing.assert_array_equal(labels_of(tmp_path / "out" / f"s{i}_synthseg.nii.gz"),
                                      reference.segment(scan).labels.data)
        conformed = prepare_scan(load_image(scan), reference.network.resolution_mm, reference.network.size_multiple,
                                 reference.settings)
        resampled = nib.load(tmp_path / "res" / f"s{i}_resampled.nii.gz")
        np.testing.assert_array_equal(resampled.get_fdata(dtype=np.float32), conformed.conformed)
        np.testing.assert_allclose(resampled.affine, conformed.conformed_affine, atol=1e-6)


def test_a_failed_scan_does_not_stop_the_others(tmp_path, model, capsys):
    write_scan(tmp_path / "in" / "a.nii.gz", seed=0)
    (tmp_path / "in" / "b.nii.gz").write_bytes(b"\x1f\x8b this is not an image")
    save_image(np.zeros((28, 28, 28), np.float32), AFFINE, tmp_path / "in" / "c.nii.gz")  # empty scan
    write_scan(tmp_path / "in" / "d.nii.gz", seed=1)
    code, err = run(capsys, "--i", tmp_path / "in", "--o", tmp_path / "out", "--model", model, "--cpu",
                    "--vol", tmp_path / "v.csv", "--post", tmp_path / "post")
    assert code == 1
    assert f"error: {tmp_path / 'in' / 'b.nii.gz'}: cannot be read" in err
    assert f"error: {tmp_path / 'in' / 'c.nii.gz'}: " in err
    assert "2 segmented, 0 skipped, 2 failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_synthseg.nii.gz", "d_synthseg.nii.gz"]
    assert sorted(p.name for p in (tmp_path / "post").iterdir()) == ["a_posteriors.nii.gz", "d_posteriors.nii.gz"]
    assert list(pd.read_csv(tmp_path / "v.csv")["scan"]) == ["a", "d"]


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        synthseg_bids(["segment", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    parser = segment_cli.build_parser()
    for action in parser._actions:
        for option in action.option_strings:
            assert option in text, option
        assert action.help, action.option_strings
    for option in ["--i", "--o", "--vol", "--qc", "--post", "--resample", "--crop", "--threads", "--cpu", "--ct",
                   "--fast", "--model", "--overwrite", "--device", "--parc", "--robust", "--v1", "--photo"]:
        assert option in text
    assert "Exit status" in text


def test_unavailable_options_are_refused(tmp_path, model, capsys):
    scan = write_scan(tmp_path / "s.nii.gz")
    code, err = run(capsys, "--i", scan, "--o", tmp_path / "o.nii.gz", "--model", model, "--photo")
    assert code == 2 and "Photo-SynthSeg" in err and "does not have" in err
    assert not (tmp_path / "o.nii.gz").exists()


@pytest.mark.parametrize("option", ["--parc", "--robust", "--v1"])
def test_official_switches_need_a_model_folder(tmp_path, model, capsys, option):
    scan = write_scan(tmp_path / "s.nii.gz")
    code, err = run(capsys, "--i", scan, "--o", tmp_path / "o.nii.gz", "--model", model, option)
    assert code == 2 and f"{option} select(s)" in err and "--model-dir" in err
    assert not (tmp_path / "o.nii.gz").exists()


def test_missing_default_model(tmp_path, capsys, monkeypatch):
    import synthseg_bids.inference.runtime as runtime

    monkeypatch.setattr(runtime, "default_model_path", lambda: tmp_path / "default_model.npz")
    scan = write_scan(tmp_path / "s.nii.gz")
    code, err = run(capsys, "--i", scan, "--o", tmp_path / "o.nii.gz")
    assert code == 1 and "default model is not installed" in err and "--model" in err
    code, err = run(capsys, "--i", scan, "--o", tmp_path / "o.nii.gz", "--model", tmp_path / "nope.npz")
    assert code == 1 and "nope.npz: model file not found" in err


def test_subprocess_without_tensorflow_for_help(tmp_path, model):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NIPYPE_NO_ET": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    probe = ("import sys, synthseg_bids.cli.segment as s; s.build_parser().format_help(); "
             "print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    scan = write_scan(tmp_path / "sub-01_T2w.nii.gz")
    done = subprocess.run(
        [sys.executable, "-m", "synthseg_bids.cli.main", "segment", "--i", str(scan), "--o", str(tmp_path / "out"),
         "--model", str(model), "--cpu", "--threads", "1", "--fast", "--crop", "32", "--vol", str(tmp_path / "v.csv")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "[1/1] sub-01_T2w.nii.gz" in done.stderr
    assert nib.load(tmp_path / "out" / "sub-01_T2w_synthseg.nii.gz").shape == (28, 28, 28)
    assert list(pd.read_csv(tmp_path / "v.csv")["scan"]) == ["sub-01_T2w"]
