"""Security review checks (docs/robustness.md, "Security")."""

from __future__ import annotations

import ast
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from synthseg_bids.cli.main import main
from synthseg_bids.network import ModelFileError, read_model_file

PACKAGE = Path(__file__).resolve().parents[2] / "synthseg_bids"


class _Payload:
    """Unpickling this creates ``marker``: proof of code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _npz_with(path: Path, name: str, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, payload)
    return path


@pytest.mark.parametrize("kind", ["object_array", "raw_pickle_member", "pickle_file"])
def test_model_files_never_execute_code(tmp_path, kind, capsys):
    marker = tmp_path / "marker"
    model = tmp_path / "evil.npz"
    if kind == "object_array":  # numpy object array: pickled inside the .npy
        np.savez(model, metadata=np.array([_Payload(marker)], dtype=object))
    elif kind == "raw_pickle_member":  # a .npy member that is a bare pickle stream
        _npz_with(model, "metadata.npy", pickle.dumps(_Payload(marker)))
    else:  # the whole file is a pickle
        model.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelFileError) as info:
        read_model_file(model)
    assert str(info.value).startswith(f"{model}: ")
    assert not marker.exists()
    scan = tmp_path / "scan.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), str(scan))
    assert main(["segment", "--i", str(scan), "--o", str(tmp_path / "seg.nii.gz"), "--model", str(model),
                 "--cpu"]) == 1
    assert f"error: {model}: " in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "seg.nii.gz").exists()
    if kind == "object_array":
        assert "pickled or object data" in str(info.value)


# -- static scan of the package --------------------------------------------------------------

FORBIDDEN_CALLS = {"os.system", "os.popen", "eval", "exec", "pickle.load", "pickle.loads", "marshal.loads",
                   "yaml.load", "yaml.unsafe_load", "yaml.full_load", "torch.load", "shelve.open",
                   "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads", "joblib.load"}


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def scan_source(source: str, filename: str = "<src>") -> list[str]:
    """Dangerous calls in Python source: shell=True, os.system/eval/exec/pickle..., allow_pickle=True,
    keras loading with safe_mode=False."""
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        where = f"{filename}:{node.lineno}"
        if name in FORBIDDEN_CALLS or name.rsplit(".", 1)[-1] in {"system", "popen"} and name.startswith("os"):
            problems.append(f"{where}: {name}()")
        for kw in node.keywords:
            value = kw.value
            truthy = not (isinstance(value, ast.Constant) and not value.value)
            if kw.arg == "shell" and truthy:
                problems.append(f"{where}: {name}(shell=...)")
            if kw.arg == "allow_pickle" and truthy:
                problems.append(f"{where}: {name}(allow_pickle=...)")
            if kw.arg == "safe_mode" and isinstance(value, ast.Constant) and value.value is False:
                problems.append(f"{where}: {name}(safe_mode=False)")
    return problems


def test_scanner_catches_what_it_should():
    bad = ("import os, subprocess, pickle, yaml, numpy as np\nsubprocess.run(cmd, shell=True)\nos.system(c)\n"
           "eval(x)\nexec(y)\npickle.load(f)\nyaml.load(s)\nnp.load(p, allow_pickle=True)\n"
           "keras.saving.load_model(p, safe_mode=False)\nsubprocess.Popen(c, shell=flag)\n")
    assert len(scan_source(bad)) == 9
    good = "subprocess.run([exe, path], shell=False)\nnp.load(p, allow_pickle=False)\nyaml.safe_load(s)\n"
    assert scan_source(good) == []


def test_package_has_no_dangerous_calls():
    problems = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    for path in files:
        problems += scan_source(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert problems == []


# -- the nipype plugin YAML ---------------------------------------------------------------------

def test_plugin_yaml_is_loaded_safely(tmp_path, capsys):
    from synthseg_bids.cli.example_data import make_example_dataset

    bids = make_example_dataset(tmp_path / "bids", resolution_mm=2.0, shape=(12, 12, 12))
    marker = tmp_path / "marker"
    plugin = tmp_path / "plugin.yml"
    plugin.write_text(f'plugin: !!python/object/apply:os.system ["touch {marker}"]\n')
    model = tmp_path / "m.npz"
    from synthseg_bids.core.labels import default_label_table
    from synthseg_bids.network import ModelInfo, NetworkSettings, build_unet, save_model

    settings = NetworkSettings(base_features=4, n_levels=2, normalisation="none")
    save_model(model, build_unet(settings, 33, seed=0), ModelInfo(network=settings, label_table=default_label_table()))
    rc = main([str(bids), str(tmp_path / "out"), "participant", "--model", str(model), "--use-plugin", str(plugin),
               "-w", str(tmp_path / "work"), "--skip-bids-validation", "--participant-label", "02"])
    assert rc == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"synthseg-bids: error: --use-plugin: {plugin} is not valid YAML")
    assert not marker.exists()


# -- output paths come from validated BIDS entities ----------------------------------------------

@pytest.mark.parametrize("name", ["sub-../x_T1w.nii.gz", "sub-01_acq-a/b_T1w.nii.gz", "sub-01_ses-..\\_T1w.nii.gz",
                                  "sub-0 1_T1w.nii.gz", "sub-01_T1w-x.nii.gz", "notbids.nii.gz"])
def test_derivative_names_reject_unsafe_entities(tmp_path, name):
    from synthseg_bids.bids import derivative_path

    with pytest.raises(ValueError):
        derivative_path(tmp_path / "bids" / name, tmp_path / "out", "dseg", ".nii.gz")


def test_derivative_paths_stay_inside_output_dir(tmp_path):
    from synthseg_bids.bids import derivative_path

    out = tmp_path / "out"
    for name in ("sub-01_T1w.nii.gz", "sub-A1_ses-B2_acq-x_run-3_FLAIR.nii.gz"):
        for datatype, extension in (("anat", ".nii.gz"), ("figures", ".png")):
            path = derivative_path(tmp_path / name, out, "dseg", extension, datatype=datatype)
            assert path.resolve().is_relative_to(out.resolve()) and ".." not in path.parts
