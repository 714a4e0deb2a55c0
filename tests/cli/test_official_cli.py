"""``synthseg-bids segment`` with SynthSeg's published networks, and ``synthseg-bids export-model``.

The networks are small random-weight versions built and saved by FreeSurfer's own Keras 2 code
(tests/official_networks.py) under the file names of ``$FREESURFER_HOME/models``; their
segmentations are meaningless, so the tests check the files chosen, the outputs written and the
errors. Inputs are 28^3 toy heads with the smallest network input lowered to 32 voxels and the QC
cube to 32^3 (both are sizes, not behaviour).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import labels_of, run_main, toy_head

import synthseg_bids.cli.segment as segment_cli
import synthseg_bids.inference.official as official
from official_networks import build_networks, write_model_dir
from synthseg_bids.core.io import save_image
from synthseg_bids.network.official import DK_PARCELLATION_TABLE, QC_GROUP_NAMES, official_label_table

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_model_dir(tmp_path_factory.mktemp("fs_models"), build_networks(seed=1))


@pytest.fixture(autouse=True)
def small_sizes(monkeypatch):
    original = segment_cli.settings_from_args

    def settings(args):
        return dataclasses.replace(original(args), min_size=32)

    monkeypatch.setattr(segment_cli, "settings_from_args", settings)
    monkeypatch.setattr(official, "QC_SHAPE", 32)


def scan(path: Path, seed=0) -> Path:
    return save_image(toy_head(seed=seed), np.diag([1.1, 1.1, 1.1, 1.0]), path)


def test_model_file_h5(tmp_path, model_dir, capsys):
    source = scan(tmp_path / "sub-01_T1w.nii.gz")
    out = tmp_path / "seg.nii.gz"
    code, err = run_main(capsys, "segment", "--i", source, "--o", out, "--model", model_dir / "synthseg_2.0.h5",
                    "--vol", tmp_path / "v.csv", "--cpu")
    assert code == 0, err
    assert "(SynthSeg 2.0)" in err
    image = nib.load(out)
    assert image.shape == (28, 28, 28) and np.allclose(image.affine, np.diag([1.1, 1.1, 1.1, 1.0]))
    assert set(np.unique(labels_of(out))) <= set(official_label_table("2.0").values.tolist())
    volumes = pd.read_csv(tmp_path / "v.csv")
    assert "total intracranial" in volumes and "CSF" in volumes


def test_model_dir_v1_and_robust(tmp_path, model_dir, capsys):
    source = scan(tmp_path / "s.nii.gz")
    code, err = run_main(capsys, "segment", "--i", source, "--o", tmp_path / "v1.nii.gz", "--model-dir", model_dir,
                    "--v1", "--cpu")
    assert code == 0, err
    assert "synthseg_1.0.h5 (SynthSeg 1.0)" in err
    assert 24 not in np.unique(labels_of(tmp_path / "v1.nii.gz"))  # 1.0 has no CSF
    code, err = run_main(capsys, "segment", "--i", source, "--o", tmp_path / "robust.nii.gz", "--model-dir", model_dir,
                    "--robust", "--cpu")
    assert code == 0, err
    assert "synthseg_robust_2.0.h5 (SynthSeg 2.0, robust)" in err


def test_robust_implies_fast():
    args = segment_cli.build_parser().parse_args(["--i", "a.nii", "--o", "b.nii", "--model-dir", "m", "--robust"])
    settings = segment_cli.settings_from_args(args)
    assert settings.flip is False and settings.postprocess == "brain"


def test_parcellation_and_network_qc(tmp_path, model_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        scan(folder / f"s{i}.nii.gz", seed=i)
    code, err = run_main(capsys, "segment", "--i", folder, "--o", tmp_path / "out", "--model-dir", model_dir, "--parc",
                    "--vol", tmp_path / "v.csv", "--qc", tmp_path / "q.csv", "--cpu", "--fast")
    assert code == 0, err
    assert "SynthSeg 2.0, parcellation" in err and "SynthSeg 2.0, QC" in err
    dk = set(DK_PARCELLATION_TABLE.values[1:].tolist())
    allowed = set(official_label_table("2.0").values.tolist()) - {3, 42} | dk
    for i in range(2):
        values = set(np.unique(labels_of(tmp_path / "out" / f"s{i}_synthseg.nii.gz")).tolist())
        assert values <= allowed  # every cortex voxel has its parcel
    volumes = pd.read_csv(tmp_path / "v.csv")
    parcels = DK_PARCELLATION_TABLE.names[1:]
    assert list(volumes.columns[-len(parcels):]) == parcels
    cortex = volumes["Left-Cerebral-Cortex"] + volumes["Right-Cerebral-Cortex"]
    # each cell is rounded to 3 decimals (as mri_synthseg's): the sum of 68 parcels is within 68 + 2 roundings
    np.testing.assert_allclose(volumes[parcels].sum(axis=1), cortex, rtol=0, atol=5e-4 * (len(parcels) + 2))
    qc = pd.read_csv(tmp_path / "q.csv")
    assert list(qc.columns) == ["scan", *QC_GROUP_NAMES] and list(qc["scan"]) == ["s0", "s1"]
    assert ((qc[list(QC_GROUP_NAMES)] >= 0) & (qc[list(QC_GROUP_NAMES)] <= 1)).all().all()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--v1", "--robust"], "--v1 cannot be used with --robust"),
        (["--model", "x.h5"], "either --model FILE or --model-dir DIR"),
    ],
)
def test_incompatible_switches(tmp_path, model_dir, capsys, args, words):
    source = scan(tmp_path / "s.nii.gz")
    code, err = run_main(capsys, "segment", "--i", source, "--o", tmp_path / "o.nii.gz", "--model-dir", model_dir, *args)
    assert code == 2 and words in err
    assert not (tmp_path / "o.nii.gz").exists()


def test_missing_network_in_model_dir(tmp_path, model_dir, capsys):
    partial = tmp_path / "models"
    partial.mkdir()
    (partial / "synthseg_2.0.h5").write_bytes((model_dir / "synthseg_2.0.h5").read_bytes())
    source = scan(tmp_path / "s.nii.gz")
    code, err = run_main(capsys, "segment", "--i", source, "--o", tmp_path / "o.nii.gz", "--model-dir", partial, "--parc")
    assert code == 1 and "synthseg_parc_2.0.h5: not found" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "s.nii.gz"]


def _nan_weights(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as handle:
        name = "unet_conv_downarm_0_0/unet_conv_downarm_0_0/kernel:0"
        handle[name][...] = np.nan
    return target


@pytest.mark.parametrize("kind", ["text", "not a network", "nan weights", "parcellation"])
def test_bad_model_files_write_nothing(tmp_path, model_dir, capsys, kind):
    bad = tmp_path / "bad.h5"
    if kind == "text":
        bad.write_text("not a network\n")
        words = "is not an HDF5 file"
    elif kind == "not a network":
        with h5py.File(bad, "w") as handle:
            handle["x"] = np.zeros(3)
        words = "not a Keras network"
    elif kind == "nan weights":
        _nan_weights(model_dir / "synthseg_2.0.h5", bad)
        words = "unet_conv_downarm_0_0"
    else:
        bad.write_bytes((model_dir / "synthseg_parc_2.0.h5").read_bytes())
        words = "parcellation network, not a segmentation"
    source = scan(tmp_path / "s.nii.gz")
    code, err = run_main(capsys, "segment", "--i", source, "--o", tmp_path / "out.nii.gz", "--model", bad,
                    "--vol", tmp_path / "v.csv")
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"synthseg-bids segment: error: {bad}") and words in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5", "s.nii.gz"]


# -- export-model -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batchnorm_model(tmp_path_factory) -> Path:
    from synthseg_bids.core.labels import default_label_table
    from synthseg_bids.network import ModelInfo, NetworkSettings, build_unet, save_model

    settings = NetworkSettings(base_features=4, n_levels=2)
    info = ModelInfo(network=settings, label_table=default_label_table(), resolution_mm=1.0)
    path = tmp_path_factory.mktemp("npz") / "bn.npz"
    return Path(save_model(path, build_unet(settings, 33, seed=0), info))


def test_export_model_round_trip(tmp_path, batchnorm_model, capsys):
    out = tmp_path / "exported.h5"
    code, err = run_main(capsys, "export-model", batchnorm_model, out)
    assert code == 0, err
    assert f"wrote {out}" in err
    assert "mri_synthseg cannot run it unchanged: mri_synthseg builds 5 levels, this network has 2" in err
    from synthseg_bids.network import load_model
    from synthseg_bids.network.official import read_official

    exported = read_official(out, expect="segmentation")
    model, info = load_model(batchnorm_model)
    image = np.random.default_rng(0).uniform(0, 1, (1, 16, 16, 16, 1)).astype(np.float32)
    order = np.argsort(info.label_table.values)
    np.testing.assert_allclose(np.asarray(exported.model(image)), np.asarray(model(image))[..., order], atol=1e-5)
    # an existing output is kept unless --overwrite
    before = out.read_bytes()
    code, err = run_main(capsys, "export-model", batchnorm_model, out)
    assert code == 1 and "exists already" in err and out.read_bytes() == before
    code, err = run_main(capsys, "export-model", batchnorm_model, out, "--overwrite")
    assert code == 0, err


def test_export_model_errors(tmp_path, tiny_model, capsys):
    code, err = run_main(capsys, "export-model", tmp_path / "missing.npz", tmp_path / "o.h5")
    assert code == 1 and "missing.npz: model file not found" in err
    code, err = run_main(capsys, "export-model", tiny_model, tmp_path / "o.nii")
    assert code == 2 and "must end in .h5" in err
    code, err = run_main(capsys, "export-model", tiny_model, tmp_path / "o.h5")  # no batch normalisation
    assert code == 1 and "cannot be exported" in err
    assert not (tmp_path / "o.h5").exists()


# -- the BIDS-App ---------------------------------------------------------------------------------


def test_bids_app_with_model_dir(tmp_path, model_dir, capsys):
    import json

    from helpers import make_app_data

    from synthseg_bids.core.io import file_sha256

    data = make_app_data(tmp_path, model_dir / "synthseg_2.0.h5", shape=(24, 24, 24), n_subjects=2)
    out = tmp_path / "out"
    base = [data["bids"], out, "participant", "--participant-label", "01", "--nprocs", "1",
            "--inference-settings", data["fast"],
            "-w", tmp_path / "work", "--skip-bids-validation"]
    code, err = run_main(capsys, *base, "--model-dir", model_dir, "--v1")
    assert code == 0, err
    dsegs = sorted(out.rglob("*_dseg.nii.gz"))
    assert dsegs and all(24 not in np.unique(labels_of(p)) for p in dsegs)  # SynthSeg 1.0: no CSF
    assert "CSF" not in (out / "dseg.tsv").read_text()
    meta = json.loads(next(out.rglob("*_volumes.json")).read_text())
    assert meta["ModelSHA256"] == file_sha256(model_dir / "synthseg_1.0.h5")
    model = meta["Segmentation"]["model"]
    assert model["kind"] == "SynthSeg 1.0" and model["networks"][0]["sha256"] == meta["ModelSHA256"]
    code, err = run_main(capsys, *base, "--parc")  # the BIDS-App's --parc (tests/cli/test_app_parcellation.py)
    assert code == 2 and "--parc" in err and "--model-dir" in err
    code, err = run_main(capsys, *base, "--model-dir", model_dir, "--v1", "--robust")
    assert code == 2 and "--v1 cannot be used with --robust" in err
