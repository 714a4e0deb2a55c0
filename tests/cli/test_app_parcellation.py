"""The BIDS-App with SynthSeg's parcellation and QC networks (``--model-dir DIR --parc --qc``, issue 14).

The networks are small random-weight versions built and saved by FreeSurfer's own Keras 2 code
(tests/official_networks.py) under the file names of ``$FREESURFER_HOME/models``; their outputs are
meaningless, so the tests check what the app writes: a second label map on the source grid that
differs from the segmentation only in its cortex, where it holds Desikan-Killiany parcels; the
parcel volumes (summing to the cortex volume) and the QC-network scores in the volumes table and the
report; the provenance of each network file; the done-check; the group level; and the pinned
BIDS validator on the output. The QC network's cube is lowered to 32^3 (a size, not behaviour).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import make_app_data

import synthseg_bids.inference.official as official
from official_networks import build_networks, write_model_dir
from synthseg_bids.bids import derivative_path, scan_is_done
from synthseg_bids.cli.main import main
from synthseg_bids.core.io import file_sha256
from synthseg_bids.inference import ModelChoice
from synthseg_bids.network.official import DK_PARCELLATION_TABLE, QC_GROUP_NAMES, official_label_table

VALIDATOR = shutil.which("bids-validator-deno")
CORTEX = (3, 42)
DK_VALUES = set(DK_PARCELLATION_TABLE.values[1:].tolist())


def snake(name: str) -> str:
    """The volumes-table column of a structure name, written out here (``ctx-lh-bankssts`` -> ``ctx_lh_bankssts``)."""
    return name.replace("-", "_").replace(" ", "_").replace("+", "_").lower()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """One participant run with --parc --qc on two subjects, then the group level with references."""
    root = tmp_path_factory.mktemp("app_parc")
    model_dir = write_model_dir(root / "models", build_networks(seed=1))
    data = make_app_data(root, model_dir / "synthseg_2.0.h5", shape=(24, 24, 24), n_subjects=2)
    out = root / "out"
    base = [str(data["bids"]), str(out), "participant", "--nprocs", "1", "--inference-settings", str(data["fast"]),
            "-w", str(root / "work"), "--model-dir", str(model_dir)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(official, "QC_SHAPE", 32)
        assert main([*base, "--parc", "--qc"]) == 0
    return {"root": root, "out": out, "data": data, "model_dir": model_dir, "base": base}


def scans_of(app):
    return sorted(app["data"]["bids"].glob("sub-*/**/anat/*.nii.gz"))


def test_parcellation_map_is_the_segmentation_with_parcels_in_its_cortex(app):
    scans = scans_of(app)
    assert scans
    n_cortex = 0
    for scan in scans:
        seg_file = derivative_path(scan, app["out"], "dseg", ".nii.gz")
        parc_file = derivative_path(scan, app["out"], "dseg", ".nii.gz", variant="parc")
        assert parc_file.name.endswith("_desc-synthsegparc" + scan.name.split("_")[-1].split(".")[0] + "_dseg.nii.gz")
        source, seg, parc = nib.load(scan), nib.load(seg_file), nib.load(parc_file)
        assert parc.shape == source.shape and np.allclose(parc.affine, source.affine)
        seg_data, parc_data = np.asarray(seg.dataobj), np.asarray(parc.dataobj)
        cortex = np.isin(seg_data, CORTEX)
        np.testing.assert_array_equal(parc_data[~cortex], seg_data[~cortex])  # other labels unchanged
        assert set(np.unique(parc_data[cortex]).tolist()) <= DK_VALUES  # only parcels in the cortex
        assert not np.isin(parc_data[~cortex], list(DK_VALUES)).any()
        n_cortex += int(cortex.sum())
        sidecar = json.loads(parc_file.with_name(parc_file.name.replace(".nii.gz", ".json")).read_text())
        assert "Desikan-Killiany" in sidecar["Description"] and sidecar["SpatialReference"].startswith("bids:raw:")
    assert n_cortex > 0, "no cortex in any segmentation: the parcellation was not exercised"


def test_dseg_tsv_holds_segmentation_then_parcel_labels(app):
    table = pd.read_csv(app["out"] / "dseg.tsv", sep="\t", keep_default_na=False)
    segmentation = official_label_table("2.0").values.tolist()
    assert table["index"].tolist() == segmentation + sorted(DK_VALUES)
    assert table["name"].tolist()[len(segmentation):] == DK_PARCELLATION_TABLE.names[1:]
    assert "Desikan-Killiany" in json.loads((app["out"] / "dseg.json").read_text())["Description"]


def test_volumes_table_has_parcels_summing_to_the_cortex_and_network_qc(app):
    parcels = [snake(n) for n in DK_PARCELLATION_TABLE.names[1:]]
    qc_columns = [f"qc_network_{snake(n)}" for n in QC_GROUP_NAMES]
    tsvs = sorted(app["out"].rglob("*_desc-synthseg*_volumes.tsv"))
    assert len(tsvs) == len(scans_of(app))
    for tsv in tsvs:
        row = pd.read_csv(tsv, sep="\t", na_values="n/a", keep_default_na=False).iloc[0]
        cortex = row["left_cerebral_cortex"] + row["right_cerebral_cortex"]
        # 68 values rounded to 0.001 mm^3 each
        np.testing.assert_allclose(row[parcels].sum(), cortex, rtol=1e-6, atol=68 * 5e-4)
        assert (row[parcels] >= 0).all()
        scores = row[qc_columns].astype(float)
        assert ((scores >= 0) & (scores <= 1)).all()
        sidecar = json.loads(tsv.with_suffix(".json").read_text())
        assert all(sidecar[c]["Units"] == "mm^3" for c in parcels)
        assert all("QC network" in sidecar[c]["LongName"] for c in qc_columns)


def test_provenance_records_every_network_file(app):
    model_dir = app["model_dir"]
    files = {"segmentation": "synthseg_2.0.h5", "parcellation": "synthseg_parc_2.0.h5", "qc": "synthseg_qc_2.0.h5"}
    for sidecar in app["out"].rglob("*_volumes.json"):
        meta = json.loads(sidecar.read_text())
        networks = {n["role"]: n for n in meta["Segmentation"]["model"]["networks"]}
        assert set(networks) == set(files)
        for role, name in files.items():
            assert networks[role]["sha256"] == file_sha256(model_dir / name)
            assert networks[role]["kind"]
        lines = "".join(f"{name} {file_sha256(model_dir / name)}\n" for name in files.values())
        assert meta["ModelSHA256"] == hashlib.sha256(lines.encode()).hexdigest()


def test_report_shows_the_network_qc_scores(app):
    report = (app["out"] / "sub-01.html").read_text()
    assert "SynthSeg&#x27;s QC network" in report or "SynthSeg's QC network" in report
    for name in QC_GROUP_NAMES:
        assert name in report
    assert "68 Desikan-Killiany cortical parcels" in report


def test_done_check_takes_the_parcellation_into_account(app):
    scan = scans_of(app)[0]
    meta = json.loads(derivative_path(scan, app["out"], "volumes", ".json").read_text())
    sha = meta["ModelSHA256"]
    assert scan_is_done(scan, app["out"], sha, False, parcellation=True)
    plain_sha = ModelChoice(folder=app["model_dir"]).identity().sha256
    assert not scan_is_done(scan, app["out"], plain_sha, False)  # a run without --parc/--qc redoes it
    parc = derivative_path(scan, app["out"], "dseg", ".nii.gz", variant="parc")
    parc.unlink()
    assert not scan_is_done(scan, app["out"], sha, False, parcellation=True)
    assert scan_is_done(scan, app["out"], sha, False, parcellation=False)
    with pytest.MonkeyPatch.context() as mp:  # the re-run writes it again
        mp.setattr(official, "QC_SHAPE", 32)
        assert main([*app["base"], "--parc", "--qc", "--participant-label", scan.name.split("_")[0][4:]]) == 0
    assert parc.is_file()


def test_group_level_pairs_only_the_segmentations(app):
    reference = app["root"] / "manual"
    reference.mkdir()
    segs = sorted(app["out"].rglob("*_desc-synthsegT1w_dseg.nii.gz"))
    assert segs
    for dseg in segs:
        shutil.copyfile(dseg, reference / dseg.name.replace("_desc-synthsegT1w", ""))
    base = app["base"][:2] + ["group"] + app["base"][3:]
    assert main([*base, "--reference-dir", str(reference)]) == 0
    scores = pd.read_csv(app["out"] / "group" / "evaluation_scores.tsv", sep="\t")
    assert not scores.astype(str).apply(lambda c: c.str.contains("parc")).any().any()
    group = pd.read_csv(app["out"] / "group" / "volumes.tsv", sep="\t")
    assert "ctx_lh_precuneus" in group.columns and "qc_network_cerebellum" in group.columns


@pytest.mark.skipif(VALIDATOR is None, reason="bids-validator-deno not installed (pip install '.[test]')")
def test_output_passes_the_bids_validator(app):
    proc = subprocess.run([VALIDATOR, str(app["out"]), "--format", "json"], capture_output=True, text=True,
                          check=False)
    issues = json.loads(proc.stdout)["issues"]["issues"]
    errors = sorted((i["code"], i.get("location", "")) for i in issues if i["severity"] == "error")
    assert errors == []
    assert proc.returncode == 0
