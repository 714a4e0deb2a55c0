"""The bad-input catalogue (docs/robustness.md), one test per entry.

Every bad input must give a clear one-line message naming the file and the problem, a
non-zero exit status (or a per-scan failure while the other scans go on), and write
nothing outside the output and work folders: each test snapshots the tree around it
(file list + mtimes) and compares. Scans are 20^3-32^3 toy heads, the model a tiny
random-weight U-Net; the segmentations are nonsense, the behaviour is what is tested.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import make_app_data, make_toy_label_map

import synthseg_bids.cli.segment as segment_cli
from synthseg_bids.cli.main import main
from synthseg_bids.core import io as core_io
from synthseg_bids.core.io import ImageError, load_image

AFFINE = np.array([[-1.0, 0, 0, 12], [0, 1.0, 0, -12], [0, 0, 1.0, -12], [0, 0, 0, 1]])


def tree(folder: Path, skip=()) -> dict[str, int]:
    """File list + mtimes under ``folder``, leaving out the folders in ``skip``."""
    skip = [Path(s) for s in skip]
    return {str(p.relative_to(folder)): p.lstat().st_mtime_ns for p in sorted(folder.rglob("*"))
            if not any(p == s or s in p.parents for s in skip)}


def head(shape=(24, 24, 24), seed=0) -> np.ndarray:
    labels = make_toy_label_map(shape, seed=seed)
    return np.where(labels > 0, 20.0 + (labels % 7) * 10.0, 0.0).astype(np.float32)


def nifti(path: Path, data, affine=AFFINE) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def patch_header(path: Path, offset: int, value) -> Path:
    """Overwrite header bytes of an uncompressed .nii in place."""
    raw = bytearray(path.read_bytes())
    value = np.asarray(value)
    raw[offset:offset + value.nbytes] = value.tobytes()
    path.write_bytes(bytes(raw))
    return path


# -- the bad files ---------------------------------------------------------------------

def _truncated(p):
    good = nifti(p.with_name("good_tmp.nii.gz"), head())
    p.write_bytes(good.read_bytes()[:600])
    good.unlink()
    return p


def _dim_lie(p):  # dim[1] says 64 voxels, the data holds 24
    return patch_header(nifti(p, head()), 42, np.int16(64))


def _dtype_lie(p):  # datatype/bitpix say float64, the data is float32
    nifti(p, head())
    patch_header(p, 70, np.int16(64))
    return patch_header(p, 72, np.int16(64))


def _bad_voxel(value):
    def make(p):
        data = head()
        data[3, 4, 5] = value
        return nifti(p, data)
    return make


def _pixdim(offset, value, keep_forms):
    def make(p):
        nifti(p, head())
        patch_header(p, offset, np.float32(value))
        if not keep_forms:  # readers then derive the affine from pixdim
            patch_header(p, 252, np.zeros(2, np.int16))
        return p
    return make


BAD_FILES = {
    # name: (maker, file name, expected message part)
    "truncated_gz": (_truncated, "trunc.nii.gz", "truncated"),
    "header_dim_larger_than_data": (_dim_lie, "dimlie.nii", "truncated"),
    "header_dtype_larger_than_data": (_dtype_lie, "dtypelie.nii", "truncated"),
    "nan_voxel": (_bad_voxel(np.nan), "nan.nii.gz", "1 NaN or infinite voxel"),
    "inf_voxel": (_bad_voxel(np.inf), "inf.nii.gz", "1 NaN or infinite voxel"),
    "2d": (lambda p: nifti(p, head()[:, :, 12]), "flat.nii.gz", "is 2D"),
    "4d_three_volumes": (lambda p: nifti(p, np.stack([head()] * 3, -1)), "multi.nii.gz", "is 4D with 3 volumes"),
    "zero_pixdim_x": (_pixdim(80, 0.0, False), "zerox.nii", "zero, negative or invalid voxel size (0, 1, 1)"),
    "negative_pixdim_y": (_pixdim(84, -1.0, False), "negy.nii", "zero, negative or invalid voxel size (1, -1, 1)"),
    "negative_pixdim_y_sform_kept": (_pixdim(84, -1.0, True), "negy2.nii", "voxel size (1, -1, 1)"),
    "nan_pixdim_z": (_pixdim(88, np.nan, True), "nanz.nii", "voxel size (1, 1, nan)"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_load_image_names_file_and_problem(tmp_path, case):
    make, name, expected = BAD_FILES[case]
    path = make(tmp_path / name)
    with np.errstate(all="ignore"), pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_all_zero_image_loads_but_cannot_be_segmented(tmp_path, segment_run):
    """All-zero loads (a valid file) but is refused by the segmenter as constant."""
    line = segment_run["lines"]["zeros.nii.gz"]
    assert "constant" in line or "no usable intensities" in line or "all" in line, line


# -- the same files through `synthseg-bids segment` (one run for all, per-scan failures) ----

@pytest.fixture(scope="module")
def model(tiny_model) -> Path:
    return tiny_model


@pytest.fixture
def small_input(monkeypatch):
    """Small network input for the in-process `segment` command (as in tests/cli)."""
    original = segment_cli.settings_from_args
    monkeypatch.setattr(segment_cli, "settings_from_args",
                        lambda args: dataclasses.replace(original(args), min_size=16))


def run_segment(*args) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(["segment", *map(str, args)])
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


OBLIQUE = np.array([[0.95, -0.31, 0.0, -10], [0.30, 0.92, -0.25, -14], [0.08, 0.24, 0.97, -9], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def segment_run(tmp_path_factory, model):
    """One `segment` run over a folder holding every bad file, an all-zero, an oblique and a good scan."""
    root = tmp_path_factory.mktemp("segment")
    scans, out = root / "scans", root / "out"
    scans.mkdir()
    with np.errstate(all="ignore"):
        for make, name, _ in BAD_FILES.values():
            make(scans / name)
    nifti(scans / "zeros.nii.gz", np.zeros((24, 24, 24), np.float32))
    nifti(scans / "oblique.nii.gz", head(seed=1), OBLIQUE)
    nifti(scans / "good.nii.gz", head(seed=2))
    before = tree(root)
    mp = pytest.MonkeyPatch()
    original = segment_cli.settings_from_args
    mp.setattr(segment_cli, "settings_from_args", lambda args: dataclasses.replace(original(args), min_size=16))
    try:
        code, err = run_segment("--i", scans, "--o", out, "--model", model, "--cpu", "--fast")
    finally:
        mp.undo()
    lines = {}
    for line in err.splitlines():
        if line.startswith("error: "):
            lines[Path(line[len("error: "):].split(": ")[0]).name] = line
    return {"root": root, "scans": scans, "out": out, "code": code, "err": err, "lines": lines, "before": before}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_segment_fails_the_bad_scan_only(segment_run, case):
    _, name, expected = BAD_FILES[case]
    assert segment_run["code"] == 1
    line = segment_run["lines"].get(name)
    assert line is not None, segment_run["err"]
    assert line.startswith(f"error: {segment_run['scans'] / name}: ") and expected in line
    # no output (not even a partial or temporary one) for the bad scan
    stem = name.split(".")[0]
    assert not [p for p in segment_run["out"].iterdir() if p.name.lstrip(".").startswith(stem)]


def test_segment_writes_nothing_outside_output(segment_run):
    after = tree(segment_run["root"], skip=[segment_run["out"]])
    assert after == segment_run["before"]
    names = sorted(p.name for p in segment_run["out"].iterdir())
    assert names == ["good_synthseg.nii.gz", "oblique_synthseg.nii.gz"], names  # no temporaries


def test_oblique_scan_is_segmented_on_its_own_grid(segment_run):
    seg = nib.load(segment_run["out"] / "oblique_synthseg.nii.gz")
    assert seg.shape == (24, 24, 24)
    np.testing.assert_allclose(seg.affine, OBLIQUE, atol=1e-4)
    assert "oblique.nii.gz" not in segment_run["lines"]


# -- huge images -----------------------------------------------------------------------

def test_huge_header_with_little_data_is_refused_without_allocating(tmp_path):
    """A header claiming 512^3 voxels at 0.5 mm over a tiny file: refused from the header/size check."""
    path = nifti(tmp_path / "huge.nii", np.zeros((8, 8, 8), np.float32), np.diag([0.5, 0.5, 0.5, 1]))
    patch_header(path, 42, np.array([512, 512, 512], np.int16))
    with pytest.raises(ImageError, match=r"huge\.nii: voxel data cannot be read, the file may be truncated"):
        load_image(path)


def test_large_scan_goes_through_patch_prediction(tmp_path, model):
    """Stand-in for 0.5 mm 512^3: 0.5 mm 48^3 with max_voxels lowered, so the network runs in patches."""
    from synthseg_bids.inference import InferenceSettings, Segmenter

    scan = nifti(tmp_path / "big.nii.gz", head((48, 48, 48)), np.diag([0.5, 0.5, 0.5, 1]))
    settings = InferenceSettings(device="cpu", flip=False, postprocess="none", smoothing_sigma=0.0,
                                 min_size=32, patch_size=16, patch_overlap=4, max_voxels=16**3)
    segmenter = Segmenter(model, settings)
    calls = []
    run = segmenter._run
    segmenter._run = lambda batch: (calls.append(batch.shape), run(batch))[1]
    result = segmenter.segment(scan)
    assert len(calls) > 1 and all(np.prod(s[1:4]) <= 16**3 for s in calls), calls
    assert result.labels.shape == (48, 48, 48)


def test_out_of_memory_is_a_clear_per_scan_error(tmp_path, model, small_input, monkeypatch):
    from synthseg_bids.inference import Segmenter

    def no_memory(self, batch):
        raise MemoryError()

    monkeypatch.setattr(Segmenter, "predict_window", no_memory)
    scan = nifti(tmp_path / "sub-01_T1w.nii.gz", head())
    code, err = run_segment("--i", scan, "--o", tmp_path / "seg.nii.gz", "--model", model, "--cpu")
    assert code == 1
    assert f"error: {scan}: out of memory (try --crop with a smaller size)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01_T1w.nii.gz"]


def test_posteriors_that_cannot_fit_in_memory_are_refused_before_any_work(tmp_path, model, small_input,
                                                                         monkeypatch):
    """A 0.5 mm 512^3 scan needs ~35 GB for its posteriors: refused up front (here: 'available' set to 1 MB)."""
    from synthseg_bids.inference import Segmenter, memory

    def must_not_run(self, batch):
        raise AssertionError("the network ran although the request was refused")

    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 2**20)
    monkeypatch.setattr(Segmenter, "predict_window", must_not_run)
    scan = nifti(tmp_path / "sub-01_T1w.nii.gz", head())
    code, err = run_segment("--i", scan, "--o", tmp_path / "seg.nii.gz", "--post", tmp_path / "post.nii.gz",
                            "--model", model, "--cpu")
    assert code == 1
    assert f"error: {scan}: posteriors on its 24x24x24 grid (33 structures) need about 3.5 MB, more than the 1.0 MB" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01_T1w.nii.gz"]


# -- full disk -----------------------------------------------------------------------

def _full_disk(monkeypatch, module):
    real = core_io.atomic_path

    @contextlib.contextmanager
    def full(path):
        with real(path) as tmp:
            yield tmp
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    monkeypatch.setattr(module, "atomic_path", full)


def test_full_disk_in_segment_leaves_no_partial_file(tmp_path, model, small_input, monkeypatch):
    import synthseg_bids.inference.results as results_module

    _full_disk(monkeypatch, core_io)
    _full_disk(monkeypatch, results_module)
    scan = nifti(tmp_path / "sub-01_T1w.nii.gz", head())
    before = tree(tmp_path)
    code, err = run_segment("--i", scan, "--o", tmp_path / "out" / "seg.nii.gz", "--model", model, "--cpu",
                            "--vol", tmp_path / "out" / "vol.csv")
    assert code == 1
    assert f"error: {scan}: [Errno 28] No space left on device" in err
    assert tree(tmp_path, skip=[tmp_path / "out"]) == before
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # nothing under a final or temp name


# -- evaluation ----------------------------------------------------------------------

def test_evaluate_reports_unexpected_labels(tmp_path, capsys):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir()
    pred.mkdir()
    labels = make_toy_label_map((20, 20, 20))
    labels[labels == 258] = 0  # the toy 'scalp' is not a SynthSeg structure either
    odd = labels.copy()
    odd[labels == 24] = 999  # CSF relabelled: not in the table
    nifti(ref / "sub-01_dseg.nii.gz", labels.astype(np.int16))
    nifti(pred / "sub-01_dseg.nii.gz", odd.astype(np.int16))
    before = tree(tmp_path)
    assert main(["evaluate", "--ref", str(ref), "--pred", str(pred), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert f"synthseg-bids evaluate: warning: {pred / 'sub-01_dseg.nii.gz'}: label value(s) 999 not in the label table" in err
    assert f"{ref / 'sub-01_dseg.nii.gz'}: label value" not in err  # the reference has table values only
    import pandas as pd

    scores = pd.read_csv(tmp_path / "o_scores.tsv", sep="\t")
    csf = scores[(scores.label == 24) & (scores.metric == "dice")]["value"]
    assert float(csf.iloc[0]) == 0.0  # the relabelled structure is missed, not silently matched
    assert set(tree(tmp_path)) - set(before) == {"o_scores.tsv", "o_summary.tsv"}
    # asking for the odd value scores it under a generic name
    assert main(["evaluate", "--ref", str(ref), "--pred", str(pred), "--out", str(tmp_path / "p"),
                 "--labels", "999", "24"]) == 0
    assert "label-999" in (tmp_path / "p_scores.tsv").read_text()


def test_evaluate_non_integer_label_map_is_an_error(tmp_path, capsys):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir()
    pred.mkdir()
    nifti(ref / "sub-01_dseg.nii.gz", make_toy_label_map((12, 12, 12)).astype(np.int16))
    nifti(pred / "sub-01_dseg.nii.gz", np.full((12, 12, 12), 2.5, np.float32))
    assert main(["evaluate", "--ref", str(ref), "--pred", str(pred), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"synthseg-bids evaluate: error: {pred / 'sub-01_dseg.nii.gz'}: is not a label map: it has non-integer values"
    assert not list(tmp_path.glob("o_*"))


# -- the BIDS-App ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bids_data(tmp_path_factory, model):
    return make_app_data(tmp_path_factory.mktemp("bidsapp"), model)


@pytest.fixture
def app(bids_data, tmp_path, monkeypatch):
    """A fresh copy of the dataset in tmp_path; runs the app from tmp_path/cwd; snapshots tmp_path."""
    bids = tmp_path / "bids"
    shutil.copytree(bids_data["bids"], bids, symlinks=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    def run(*extra, out=None, work=None, participant="02"):
        out = out or tmp_path / "out"
        work = work or tmp_path / "work"
        argv = [str(bids), str(out), "participant", "--model", str(bids_data["model"]), "--nprocs", "1",
                "--inference-settings", str(bids_data["fast"]), "-w", str(work), "--skip-bids-validation"]
        if participant:
            argv += ["--participant-label", participant]
        return main([*argv, *extra])

    return {"bids": bids, "tmp": tmp_path, "run": run}


def _last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.mark.parametrize("label", ["../../etc", "01/../02", "..", "0*", "01_ses-1"])
def test_participant_label_with_path_parts_is_refused(app, capsys, label):
    before = tree(app["tmp"])
    assert app["run"](participant=label) == 2
    line = _last_error(capsys)
    assert line.startswith("synthseg-bids: error: --participant-label: invalid label(s)") and repr(label) in line
    assert tree(app["tmp"]) == before


def test_session_label_with_path_parts_is_refused(app, capsys):
    before = tree(app["tmp"])
    assert app["run"]("--session-label", "../1") == 2
    assert "--session-label: invalid label(s) '../1'" in _last_error(capsys)
    assert tree(app["tmp"]) == before


@pytest.mark.parametrize("query, expected", [
    ({"anat": {"subject": "../../etc"}}, "contains a path part"),
    ({"anat": {"suffix": ["T1w", "/etc/passwd"]}}, "contains a path part"),
    ({"anat": {"return_type": "filename"}}, "not a BIDS entity name"),
    ({"anat": {"scope": "all"}}, "not a BIDS entity name"),
    ({"anat": {"suffix": {"$ne": "x"}}}, "values must be strings"),
])
def test_filter_values_cannot_escape_the_dataset(app, capsys, query, expected):
    import json

    filt = app["tmp"] / "filter.json"
    filt.write_text(json.dumps(query))
    before = tree(app["tmp"])
    assert app["run"]("--bids-filter-file", str(filt)) == 2
    line = _last_error(capsys)
    assert line.startswith(f"synthseg-bids: error: --bids-filter-file: {filt}: anat.") and expected in line
    assert tree(app["tmp"]) == before


def test_filter_file_outside_the_dataset_is_fine(app, capsys):
    """The filter FILE may live anywhere (it is only read); only its values are constrained."""
    filt = app["tmp"] / "elsewhere" / "filter.json"
    filt.parent.mkdir()
    filt.write_text('{"anat": {"suffix": "T1w", "session": null}}')
    assert app["run"]("--bids-filter-file", str(filt)) == 0
    assert sorted(p.name for p in (app["tmp"] / "out").rglob("*_dseg.nii.gz")) == ["sub-02_desc-synthsegT1w_dseg.nii.gz"]


@pytest.mark.timeout(300)  # a loop followed forever fails the test here, not the CI job
def test_symlink_loop_in_dataset_does_not_hang_or_duplicate(app, caplog):
    sub03 = app["bids"] / "sub-03"
    sub03.mkdir()
    (sub03 / "anat").symlink_to("..")  # sub-03/anat -> the dataset root: a loop
    (app["bids"] / "sub-02" / "anat" / "loop").symlink_to(".")  # and a self loop
    before = tree(app["bids"])
    assert app["run"](participant=None) == 0
    err = caplog.text
    assert "ignoring symbolic link(s) that loop back into the dataset: sub-02/anat/loop, sub-03/anat" in err
    dsegs = sorted(str(p.relative_to(app["tmp"] / "out")) for p in (app["tmp"] / "out").rglob("*_dseg.nii.gz"))
    assert dsegs == ["sub-01/ses-1/anat/sub-01_ses-1_desc-synthsegT1w_dseg.nii.gz",
                     "sub-01/ses-1/anat/sub-01_ses-1_desc-synthsegT2w_dseg.nii.gz",
                     "sub-01/ses-2/anat/sub-01_ses-2_desc-synthsegT1w_dseg.nii.gz",
                     "sub-02/anat/sub-02_desc-synthsegT1w_dseg.nii.gz"]
    assert not (app["tmp"] / "out" / "sub-03").exists()
    assert tree(app["bids"]) == before


def test_collect_scans_ignores_files_outside_their_bids_location(app):
    from synthseg_bids.bids import collect_scans

    misplaced = app["bids"] / "sub-02" / "anat" / "old"
    misplaced.mkdir()
    shutil.copy(app["bids"] / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_T1w.nii.gz", misplaced)
    scans = collect_scans(app["bids"], validate=False)
    assert [Path(p).name for p in scans["02"]] == ["sub-02_T1w.nii.gz"]


@pytest.mark.parametrize("where", ["equal", "inside", "symlink_into"])
def test_output_dir_equal_to_or_inside_bids_dir(app, capsys, where):
    out = {"equal": app["bids"], "inside": app["bids"] / "sub-01" / "synthseg",  # derivatives/<name> is allowed
           "symlink_into": app["tmp"] / "link_out"}[where]
    if where == "symlink_into":
        (app["bids"] / "derivatives").mkdir()
        out.symlink_to(app["bids"] / "derivatives")
    before = tree(app["tmp"])
    assert app["run"](out=out) == 2
    line = _last_error(capsys)
    assert "must differ" in line or "is inside bids_dir" in line
    assert tree(app["tmp"]) == before


def test_work_dir_inside_bids_dir(app, capsys):
    before = tree(app["tmp"])
    assert app["run"](work=app["bids"] / "work") == 2
    line = _last_error(capsys)
    assert line.startswith("synthseg-bids: error: work_dir ") and "is inside bids_dir" in line
    assert tree(app["tmp"]) == before


@pytest.mark.parametrize("which", ["output", "work", "output_parent"])
def test_unwritable_output_or_work_dir(app, capsys, which):
    """As root chmod does not stop writes, so a FILE stands where a folder is expected."""
    blocker = app["tmp"] / "blocker"
    blocker.write_text("not a folder")
    out, work = {"output": (blocker, None), "work": (None, blocker),
                 "output_parent": (blocker / "out", None)}[which]
    before = tree(app["tmp"])
    code = app["run"](out=out, work=work)
    line = _last_error(capsys)
    assert code != 0 and line.startswith("synthseg-bids: error: ")
    assert str(blocker) in line and ("not a folder" in line or "Not a directory" in line), line
    assert tree(app["tmp"]) == before
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits; covered by the file-as-folder test")
def test_read_only_output_dir(app, capsys):
    out = app["tmp"] / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert app["run"](out=out) == 1
        assert "Permission denied" in _last_error(capsys)
    finally:
        out.chmod(0o700)


def test_read_only_file_system_is_a_clear_error(app, capsys, monkeypatch):
    """EROFS/EACCES on the first write (what a read-only mount gives, even to root)."""
    def read_only(path):
        raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(core_io, "atomic_path", read_only)
    before = tree(app["bids"])
    assert app["run"]() == 1
    line = _last_error(capsys)
    assert line.startswith("synthseg-bids: error: ") and "Read-only file system" in line
    assert str(app["tmp"] / "out") in line
    assert tree(app["bids"]) == before


def test_full_disk_in_participant_run(app, capsys, monkeypatch):
    """ENOSPC while storing derivatives: the scan fails clearly, nothing partial under a final name."""
    import synthseg_bids.interfaces.bids as sink_module

    _full_disk(monkeypatch, sink_module)
    before = tree(app["bids"])
    assert app["run"]() == 1
    err = capsys.readouterr().err
    assert "synthseg-bids: error: sub-02/anat/sub-02_T1w.nii.gz: [Errno 28] No space left on device" in err, err
    anat = app["tmp"] / "out" / "sub-02" / "anat"
    leftovers = [p.name for p in anat.iterdir()] if anat.exists() else []
    assert leftovers == [], leftovers  # no derivative, no temporary
    assert tree(app["bids"]) == before


def test_bad_scan_in_dataset_fails_alone(app, capsys):
    """A NaN scan in the dataset: per-scan failure naming it; the other scans are done."""
    bad = app["bids"] / "sub-02" / "anat" / "sub-02_T1w.nii.gz"
    data = np.asarray(nib.load(bad).dataobj, np.float32)
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, nib.load(bad).affine), str(bad))
    filt = app["tmp"] / "filter.json"
    filt.write_text('{"anat": {"session": ["2", null]}}')
    assert app["run"]("--participant-label", "01", "02", "--bids-filter-file", str(filt), participant=None) == 1
    err = capsys.readouterr().err
    assert "synthseg-bids: error: sub-02/anat/sub-02_T1w.nii.gz: " in err and "1 NaN or infinite voxel(s)" in err
    out = app["tmp"] / "out"
    assert (out / "sub-01/ses-2/anat/sub-01_ses-2_desc-synthsegT1w_dseg.nii.gz").exists()
    assert not list((out / "sub-02").rglob("*_dseg.nii.gz"))
