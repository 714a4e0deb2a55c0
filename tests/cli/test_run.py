"""End-to-end tests of the BIDS-App (``synthseg-bids bids_dir output_dir participant|group``).

One participant run on a generated dataset (two subjects; sub-01 with two sessions and a
T2w; 40^3 scans at 1 mm, sub-02 anisotropic) with a tiny random-weight model is shared by
the tests of this module; the segmentations are nonsense, the pipeline, files and names
are what is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import re
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import make_app_data

from synthseg_bids.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SCANS = {
    "sub-01/ses-1/anat/sub-01_ses-1_desc-synthsegT1w": "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
    "sub-01/ses-1/anat/sub-01_ses-1_desc-synthsegT2w": "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz",
    "sub-01/ses-2/anat/sub-01_ses-2_desc-synthsegT1w": "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz",
    "sub-02/anat/sub-02_desc-synthsegT1w": "sub-02/anat/sub-02_T1w.nii.gz",
}


def _validator():
    return shutil.which("bids-validator-deno") or shutil.which("bids-validator")


def validator_issues(folder: Path, severity: str = "error") -> list[str]:
    proc = subprocess.run([_validator(), str(folder), "--format", "json"], capture_output=True, text=True)
    issues = json.loads(proc.stdout)["issues"]["issues"]
    return [f"{i['code']} {i.get('subCode') or ''} {i.get('location')}" for i in issues if i["severity"] == severity]


def validator_errors(folder: Path) -> list[str]:
    return validator_issues(folder, "error")


def tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_model):
    """The example dataset at 1 mm / 40^3, a tiny model, fast settings."""
    return make_app_data(tmp_path_factory.mktemp("bidsapp"), tiny_model, shape=(40, 40, 40))


def run_app(data, out, *args, level="participant"):
    argv = [str(data["bids"]), str(out), level, "--model", str(data["model"]), "--nprocs", "1",
            "--inference-settings", str(data["fast"]), "-w", str(data["root"] / f"work_{out.name}"), *args]
    return main(argv)


@pytest.fixture(scope="module")
def first_run(data):
    before = tree(data["bids"])
    out = data["root"] / "out"
    rc = run_app(data, out, "--write-posteriors")
    return {"rc": rc, "out": out, "bids_before": before}


def test_input_dataset_is_valid_bids(data):
    if not _validator():
        pytest.skip("bids-validator-deno not installed (pip install bids-validator-deno)")
    assert validator_errors(data["bids"]) == []


def test_participant_run_writes_bids_derivatives(data, first_run):
    out = first_run["out"]
    assert first_run["rc"] == 0
    assert tree(data["bids"]) == first_run["bids_before"], "the input dataset was modified"
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "synthseg-bids"
    assert description["GeneratedBy"][0]["Version"]
    assert (out / "dseg.tsv").read_text().startswith("index\tname")
    for stem, source in SCANS.items():
        dseg = out / f"{stem}_dseg.nii.gz"
        src = nib.load(data["bids"] / source)
        seg = nib.load(dseg)
        assert seg.shape == src.shape and np.allclose(seg.affine, src.affine, atol=1e-4), stem
        probseg = nib.load(out / f"{stem}_probseg.nii.gz")
        assert probseg.shape == (*src.shape, 33)
        assert json.loads((out / f"{stem}_dseg.json").read_text())["Sources"] == [f"bids:raw:{source}"]
        meta = json.loads((out / f"{stem}_volumes.json").read_text())
        assert meta["ModelSHA256"] and meta["SourceFile"]["sha256"] and "Config" in meta
        table = pd.read_csv(out / f"{stem}_volumes.tsv", sep="\t")
        assert len(table) == 1 and table.loc[0, "source"] == Path(source).name
        subject = stem.split("/")[0]
        assert (out / subject / "figures" / f"{Path(stem).name}_dseg.png").stat().st_size > 1000
    for subject in ("sub-01", "sub-02"):
        report = (out / f"{subject}.html").read_text()
        assert "figures/" in report and "Billot" in report and "Volumes" in report
    assert list((out / "logs").glob("*/config.toml"))


def test_derivatives_pass_the_bids_validator(first_run):
    if not _validator():
        pytest.skip("bids-validator-deno not installed (pip install bids-validator-deno)")
    assert validator_errors(first_run["out"]) == []
    recommended = [w for w in validator_issues(first_run["out"], "warning") if w.startswith("SIDECAR_KEY_RECOMMENDED")]
    assert recommended == []


def test_pybids_indexes_the_derivatives(first_run):
    from bids import BIDSLayout

    layout = BIDSLayout(first_run["out"], validate=False)
    dsegs = layout.get(suffix="dseg", extension=".nii.gz")
    assert len(dsegs) == 4
    t2 = layout.get(suffix="dseg", desc="synthsegT2w", extension=".nii.gz")
    assert [f.get_entities()["session"] for f in t2] == ["1"]
    raw = BIDSLayout(first_run["out"].parent / "bids", derivatives=str(first_run["out"]), validate=False)
    assert len(raw.get(scope="derivatives", suffix="dseg", extension=".nii.gz")) == 4


def test_second_run_does_no_work(data, first_run, caplog):
    out = first_run["out"]
    before = tree(out / "sub-01")
    started = time.perf_counter()
    rc = run_app(data, out, "--write-posteriors", "-v")
    took = time.perf_counter() - started
    assert rc == 0
    assert tree(out / "sub-01") == before
    summary = next(r.getMessage() for r in caplog.records if "scan(s) done" in r.getMessage())
    assert "4/4 scan(s) done (4 skipped as already done), 0 failed; total time " in summary
    total = float(re.search(r"total time ([0-9.]+) s;", summary).group(1))  # a re-run takes seconds
    assert 0 < total <= took + 0.05  # the run's own time, within the time measured around it


def test_deleted_derivative_is_written_again_with_the_reused_work_folder(data, first_run):
    """The sinks always run: a cached node upstream cannot leave a deleted derivative missing."""
    out = first_run["out"]
    figure = out / "sub-02" / "figures" / "sub-02_desc-synthsegT1w_dseg.png"
    content = figure.read_bytes()
    figure.unlink()
    assert run_app(data, out, "--write-posteriors") == 0
    assert figure.read_bytes() == content


def test_output_under_bids_derivatives_and_default_work_folder(data, tmp_path, monkeypatch, caplog):
    """fMRIPrep's places: output in <bids_dir>/derivatives/<name>, work folder ./work; nothing else is written."""
    caplog.set_level("INFO", logger="synthseg_bids")
    bids = tmp_path / "bids"
    shutil.copytree(data["bids"], bids)
    out = bids / "derivatives" / "synthseg-bids"
    monkeypatch.chdir(tmp_path)
    before = tree(bids)
    argv = [str(bids), str(out), "participant", "--model", str(data["model"]), "--nprocs", "1",
            "--inference-settings", str(data["fast"]), "--participant-label", "02"]
    assert main(argv) == 0
    assert (out / "sub-02" / "anat" / "sub-02_desc-synthsegT1w_dseg.nii.gz").is_file()
    assert {k: v for k, v in tree(bids).items() if not k.startswith("derivatives")} == before
    assert (tmp_path / "work" / "synthseg_bids_wf").is_dir()
    first = caplog.records[0].getMessage()
    assert f"work folder {tmp_path / 'work'}" in first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bids", "work"]


def test_one_process_segments_the_next_scan_ahead_and_each_scan_once(data, tmp_path, monkeypatch):
    """--nprocs 1: each segmentation node starts the next scan in the background, in the plugin's order.

    Every scan is segmented once, all but the first are taken from the look-ahead, and the
    label maps are those of the segmenter called directly (no Nipype, no look-ahead).
    """
    from synthseg_bids.inference import InferenceSettings, Segmenter
    from synthseg_bids.inference.look_ahead import LookAhead

    segmented, taken = [], []
    segment_now, take = Segmenter._segment_now, LookAhead.take

    def counting_now(self, scan, posteriors, resampled):
        segmented.append(Path(scan).name)
        return segment_now(self, scan, posteriors, resampled)

    def recording_take(self, scan, options=None):
        future = take(self, scan, options)
        if future is not None:
            taken.append(Path(scan).name)
        return future

    monkeypatch.setattr(Segmenter, "_segment_now", counting_now)
    monkeypatch.setattr(LookAhead, "take", recording_take)
    out = tmp_path / "out_ahead"
    assert run_app(data, out, "--skip-bids-validation") == 0
    names = [Path(source).name for source in SCANS.values()]  # sorted by subject, then the scans' order
    assert sorted(segmented) == sorted(names)
    assert taken == names[1:]
    monkeypatch.undo()
    direct = Segmenter(data["model"], InferenceSettings(device="cpu", flip=False, postprocess="none",
                                                        smoothing_sigma=0.0, min_size=16))
    for stem, source in SCANS.items():
        expected = direct.segment(data["bids"] / source).labels.data
        np.testing.assert_array_equal(np.asarray(nib.load(out / f"{stem}_dseg.nii.gz").dataobj), expected, stem)


def test_participant_label_selects(data):
    out = data["root"] / "out_label"
    assert run_app(data, out, "--participant-label", "sub-02") == 0
    assert sorted(p.name for p in out.glob("sub-*") if p.is_dir()) == ["sub-02"]
    assert (out / "sub-02.html").exists() and not (out / "sub-01.html").exists()


def test_corrupt_scan_fails_alone(data, tmp_path, capsys, caplog):
    caplog.set_level("INFO", logger="synthseg_bids")
    bids = tmp_path / "bids"
    shutil.copytree(data["bids"], bids)
    bad = bids / "sub-02" / "anat" / "sub-02_T1w.nii.gz"
    bad.write_bytes(bad.read_bytes()[:400])  # truncated gzip
    out = tmp_path / "out"
    argv = [str(bids), str(out), "participant", "--model", str(data["model"]), "--nprocs", "1",
            "--inference-settings", str(data["fast"]), "-w", str(tmp_path / "work"), "--skip-bids-validation"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "sub-02_T1w.nii.gz" in ln and "error" in ln)
    assert line.startswith("synthseg-bids: error: sub-02/anat/sub-02_T1w.nii.gz:") and "crash file" in line
    assert len(list(out.rglob("*_dseg.nii.gz"))) == 3
    crash = line.split("(crash file: ")[1].rstrip(")")
    assert Path(crash).is_file() and Path(crash).parent.name == "sub-02_T1w"  # logs/<run>/<scan>/crash-*.txt
    assert "sub-02_T1w.nii.gz" in (out / "sub-02.html").read_text()
    # the run ends with the failure line; progress lines and the summary come before it, at INFO
    assert err.strip().splitlines()[-1] == line
    progress = [r.getMessage() for r in caplog.records if r.name == "synthseg_bids.cli" and r.getMessage()[:1] == "["]
    assert len(progress) == 4 and sum("FAILED" in m for m in progress) == 1 and progress[-1].startswith("[4/4] ")
    summary = next(r for r in caplog.records if "scan(s) done" in r.getMessage())
    assert summary.levelname == "INFO" and "3/4 scan(s) done (0 skipped as already done), 1 failed" in summary.message


def test_group_level(data, first_run, tmp_path, caplog):
    out = first_run["out"]
    reference = tmp_path / "manual"
    other = tmp_path / "other"
    rng = np.random.default_rng(0)
    reference.mkdir()
    other.mkdir()
    for stem in SCANS:
        if "T2w" in stem:
            continue
        img = nib.load(out / f"{stem}_dseg.nii.gz")
        name = Path(stem).name.replace("_desc-synthsegT1w", "")
        nib.save(img, reference / f"{name}_dseg.nii.gz")
        noisy = np.asarray(img.dataobj).copy()
        noisy[rng.random(noisy.shape) < 0.05] = 0
        nib.save(nib.Nifti1Image(noisy, img.affine), other / f"{name}_T1w_other.nii.gz")
    work = data["root"] / f"work_{out.name}"
    work_before = sorted(p.name for p in work.iterdir())
    with caplog.at_level("INFO", logger="synthseg_bids"):
        rc = run_app(data, out, "--reference-dir", str(reference), "--compare-dir", str(other), level="group")
    assert rc == 0
    # the group level keeps nothing in the work folder, and its log says nothing of one
    assert sorted(p.name for p in work.iterdir()) == work_before
    messages = [r.getMessage() for r in caplog.records]
    assert not any("work folder" in m for m in messages)
    assert f"synthseg-bids group level: {out} -> {out / 'group'}" in messages
    group = out / "group"
    volumes = pd.read_csv(group / "volumes.tsv", sep="\t")
    assert len(volumes) == 4
    summary = pd.read_csv(group / "summary.tsv", sep="\t")
    assert {"contrast", "structure", "mean", "std"} <= set(summary.columns)
    assert (group / "outliers.tsv").exists()
    scores = pd.read_csv(group / "evaluation_scores.tsv", sep="\t", na_values="n/a", keep_default_na=False)
    assert set(scores["metric"]) >= {"dice", "hd95"}
    # the references are the pipeline's own T1w label maps: scored against themselves, Dice = 1 and distances
    # 0 for every structure present (NaN for those in neither map); the T2w is scored against the T1w's map
    own = scores[scores["subject"].str.endswith("_T1w")]
    assert sorted(own["subject"].unique()) == ["sub-01_ses-1_T1w", "sub-01_ses-2_T1w", "sub-02_T1w"]
    present = own[own["metric"] == "dice"].dropna(subset=["value"])
    assert len(present) > 0 and (present["value"] == 1.0).all()
    distances = own[own["metric"].isin(["hd", "hd95", "msd"])].dropna(subset=["value"])
    assert len(distances) == 3 * len(present) and (distances["value"] == 0.0).all()
    comparison = pd.read_csv(group / "comparison.tsv", sep="\t")
    assert {"structure", "p", "p_corrected"} <= set(comparison.columns)


# -- bad input: one-line errors, non-zero exit, nothing written into bids_dir -----------------
@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "bids_dir does not exist"),
        ("not_bids", "not a BIDS dataset"),
        ("out_inside", "only its derivatives folder may be written: use e.g. "),
        ("out_is_derivatives", "only its derivatives folder may be written"),
        ("same", "must differ"),
        ("unknown_label", "participant label(s) not found"),
        ("bad_filter", "is not valid JSON"),
    ],
)
def test_bad_input(data, tmp_path, capsys, case, expected):
    bids = tmp_path / "bids"
    shutil.copytree(data["bids"], bids)
    out = tmp_path / "out"
    extra = []
    if case == "missing":
        bids = tmp_path / "nowhere"
    elif case == "not_bids":
        (bids / "dataset_description.json").unlink()
    elif case == "out_inside":
        out = bids / "sub-01" / "synthseg"
    elif case == "out_is_derivatives":
        out = bids / "derivatives"
    elif case == "same":
        out = bids
    elif case == "unknown_label":
        extra = ["--participant-label", "03"]
    elif case == "bad_filter":
        bad = tmp_path / "filter.json"
        bad.write_text('{"anat": {"suffix": "T1w",}}')
        extra = ["--bids-filter-file", str(bad)]
    before = tree(bids) if bids.exists() else {}
    rc = main([str(bids), str(out), "participant", "--model", str(data["model"]), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert err[-1].startswith("synthseg-bids: error: ") and expected in err[-1]
    assert (tree(bids) if bids.exists() else {}) == before
    assert not out.exists() or out == bids


def test_missing_shipped_model_is_one_line(data, tmp_path, capsys, monkeypatch):
    import synthseg_bids.inference.runtime as segmenter

    absent = tmp_path / "default_model.npz"
    monkeypatch.setattr(segmenter, "default_model_path", lambda: absent)
    out = tmp_path / "out"
    assert main([str(data["bids"]), str(out), "participant", "--skip-bids-validation", "-w", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"synthseg-bids: error: {absent}: the default model is not installed with this package; give "
                       "a model file (--model)")
    assert not out.exists()


def test_bids_filter_file_selects(data, tmp_path):
    from synthseg_bids.bids import collect_scans

    scans = collect_scans(data["bids"], bids_filters='{"anat": {"suffix": "T2w"}}')
    assert {s: [Path(p).name for p in v] for s, v in scans.items()} == {"01": ["sub-01_ses-1_T2w.nii.gz"], "02": []}
    scans = collect_scans(data["bids"], session_label=("2",))
    assert [Path(p).name for p in scans["01"]] == ["sub-01_ses-2_T1w.nii.gz"]


def _cli_env():
    env = dict(os.environ, NIPYPE_NO_ET="1", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _cli_prefix():
    exe = shutil.which("synthseg-bids")
    return [exe] if exe else [sys.executable, "-m", "synthseg_bids.cli.main"]


def test_help_and_version_are_fast_without_tensorflow():
    code = ("import sys; from synthseg_bids.cli.main import main\n"
            "for a in (['--version'], ['--help']):\n    assert main(a) == 0\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "synthseg-bids 0." in proc.stdout and "--participant-label" in proc.stdout
    assert "--omp-nthreads" in proc.stdout and "--use-plugin" in proc.stdout


@pytest.mark.slow
def test_console_script_end_to_end(data, tmp_path):
    out = tmp_path / "out"
    cmd = [*_cli_prefix(), str(data["bids"]), str(out), "participant", "--participant-label", "02",
           "--model", str(data["model"]), "--nprocs", "2", "--omp-nthreads", "1",
           "--inference-settings", str(data["fast"]), "-w", str(tmp_path / "work")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_cli_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "sub-02" / "anat" / "sub-02_desc-synthsegT1w_dseg.nii.gz").exists()
    assert (out / "sub-02.html").exists()
    # MultiProc runs the nodes in workers; the progress line comes from the main process's status callback
    assert "[1/1] sub-02/anat/sub-02_T1w.nii.gz done in " in proc.stderr
    assert f"reports: {out / 'sub-02.html'}" in proc.stderr and "1/1 scan(s) done" in proc.stderr
