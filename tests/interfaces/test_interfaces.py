"""Unit tests of the Nipype interfaces that need no network (naming, sink, tables, figures, evaluation)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import make_toy_label_map, toy_affine

from synthseg_bids.bids import derivative_path, parse_entities
from synthseg_bids.bids.tables import group_summary
from synthseg_bids.interfaces.bids import DerivativesDataSink
from synthseg_bids.interfaces.evaluation import (
    CompareMethods,
    EvaluateSegmentations,
    row_key,
)
from synthseg_bids.interfaces.reports import SegmentationFigure
from synthseg_bids.interfaces.segmentation import qc_to_dict
from synthseg_bids.interfaces.volumes import GroupVolumes, VolumesTable
from synthseg_bids.reports.subject import write_subject_report


def test_derivative_names_keep_entities_and_contrast():
    src = "/d/sub-01/ses-1/anat/sub-01_ses-1_acq-x_run-1_T2w.nii.gz"
    assert derivative_path(src, "/o", "dseg", ".nii.gz").as_posix() == (
        "/o/sub-01/ses-1/anat/sub-01_ses-1_acq-x_run-1_desc-synthsegT2w_dseg.nii.gz")
    t1 = derivative_path(src.replace("T2w", "T1w"), "/o", "dseg", ".nii.gz")
    assert t1 != derivative_path(src, "/o", "dseg", ".nii.gz")
    assert derivative_path("sub-02_FLAIR.nii", "/o", "volumes", ".tsv").as_posix() == (
        "/o/sub-02/anat/sub-02_desc-synthsegFLAIR_volumes.tsv")
    with pytest.raises(ValueError, match="not a BIDS file name"):
        parse_entities("brain.nii.gz")


def test_sink_writes_atomically_with_sidecar(tmp_path):
    payload = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), payload)
    res = DerivativesDataSink(base_directory=str(tmp_path / "out"), source_file="/d/sub-01/anat/sub-01_T1w.nii.gz",
                              in_file=str(payload), suffix="dseg", meta_dict={"Sources": ["bids:raw:a"]}).run()
    out = Path(res.outputs.out_file)
    assert out == tmp_path / "out/sub-01/anat/sub-01_desc-synthsegT1w_dseg.nii.gz" and out.exists()
    assert json.loads(Path(res.outputs.out_meta).read_text()) == {"Sources": ["bids:raw:a"]}
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]


def _results(tmp_path, flag=False, wm=1000.0):
    path = tmp_path / f"r{wm}.json"
    path.write_text(json.dumps({"volumes": {"Left-Cerebral-White-Matter": wm, "total intracranial": 5000.0},
                                "qc": {"scores": {"wm confidence": 0.9}, "flag": flag}}))
    return path


def test_volumes_table_and_group_summary(tmp_path):
    tsvs = []
    for i, wm in enumerate([1000.0, 1010.0, 990.0, 1005.0, 995.0, 1000.0, 5000.0]):
        src = f"/d/sub-{i:02d}/anat/sub-{i:02d}_T1w.nii.gz"
        node_dir = tmp_path / f"n{i}"
        node_dir.mkdir()
        res = VolumesTable(in_results=str(_results(node_dir, flag=(i == 0), wm=wm)), source_file=src).run(
            cwd=str(node_dir))
        tsvs.append(res.outputs.out_tsv)
    row = pd.read_csv(tsvs[1], sep="\t").iloc[0]
    assert row["participant_id"] == "sub-01" and row["contrast"] == "T1w" and row["qc_wm_confidence"] == 0.9
    res = GroupVolumes(in_tsvs=tsvs, z_threshold=2.0).run(cwd=str(tmp_path))
    table = pd.read_csv(res.outputs.out_volumes, sep="\t")
    assert len(table) == 7
    outliers = pd.read_csv(res.outputs.out_outliers, sep="\t")
    assert set(zip(outliers["participant_id"], outliers["reason"])) == {("sub-00", "qc_flag"),
                                                                         ("sub-06", "volume_zscore")}
    summary, _ = group_summary(table)
    assert summary.loc[summary["structure"] == "total_intracranial", "std"].iloc[0] == 0


def test_qc_to_dict_gives_plain_json_values():
    from synthseg_bids.inference import QualityControl

    qc = QualityControl({"cortex confidence": np.float32(0.5)}, np.bool_(True), ("cortex confidence",),
                        {"confidence": 0.6})
    out = qc_to_dict(qc)
    assert out == {"scores": {"cortex confidence": 0.5}, "flag": True, "flagged": ["cortex confidence"],
                   "thresholds": {"confidence": 0.6}}
    assert json.loads(json.dumps(out)) == out and type(out["flag"]) is bool


def test_figure_and_subject_report(tmp_path):
    out = tmp_path / "out"
    labels = make_toy_label_map((24, 24, 16))
    labels[labels == 258] = 24
    affine = toy_affine()
    affine[2, 2] = 2.0
    anat = tmp_path / "sub-01_T1w.nii.gz"
    dseg = tmp_path / "dseg.nii.gz"
    nib.save(nib.Nifti1Image((labels > 0) * 100.0 + labels, affine), anat)
    nib.save(nib.Nifti1Image(labels.astype(np.int16), affine), dseg)
    res = SegmentationFigure(in_file=str(anat), in_dseg=str(dseg)).run(cwd=str(tmp_path))
    figure = derivative_path(anat, out, "dseg", ".png", datatype="figures")
    figure.parent.mkdir(parents=True)
    Path(res.outputs.out_figure).rename(figure)
    tsv = derivative_path(anat, out, "volumes", ".tsv")
    tsv.parent.mkdir(parents=True)
    tsv.write_text("participant_id\tsession_id\tsource\tcontrast\tqc_flag\tqc_wm\tCSF\n"
                   "sub-01\tn/a\tsub-01_T1w.nii.gz\tT1w\ttrue\t0.4\t12.5\n")
    report = write_subject_report(out, "01", versions={"version": "9.9"}, errors=["boom"]).read_text()
    assert "sub-01/figures/sub-01_desc-synthsegT1w_dseg.png" in report
    assert "FLAGGED" in report and "boom" in report and "synthseg-bids 9.9" in report and "${" not in report


def test_evaluate_and_compare(tmp_path):
    ref_dir, a_dir, b_dir = (tmp_path / n for n in ("ref", "a", "b"))
    for d in (ref_dir, a_dir, b_dir):
        d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        ref = make_toy_label_map(seed=i)
        nib.save(nib.Nifti1Image(ref, toy_affine()), ref_dir / f"sub-{i:02d}_dseg.nii.gz")
        for folder, noise in ((a_dir, 0.02), (b_dir, 0.2)):
            pred = ref.copy()
            pred[rng.random(ref.shape) < noise] = 0
            name = f"sub-{i:02d}_desc-synthsegT1w_dseg.nii.gz" if folder == a_dir else f"sub-{i:02d}_T1w_x.nii.gz"
            nib.save(nib.Nifti1Image(pred, toy_affine()), folder / name)
    assert row_key(a_dir / "sub-00_desc-synthsegT1w_dseg.nii.gz") == row_key(b_dir / "sub-00_T1w_x.nii.gz")
    ev_a = EvaluateSegmentations(predictions=sorted(map(str, a_dir.iterdir())), reference_dir=str(ref_dir),
                                 labels=[2, 3, 41, 42]).run(cwd=str(a_dir))
    ev_b = EvaluateSegmentations(predictions=sorted(map(str, b_dir.iterdir())), reference_dir=str(ref_dir),
                                 labels=[2, 3, 41, 42]).run(cwd=str(b_dir))
    scores = pd.read_csv(ev_a.outputs.out_scores, sep="\t")
    assert set(scores["subject"]) == {f"sub-{i:02d}_T1w" for i in range(4)}
    cmp = CompareMethods(scores_a=ev_a.outputs.out_scores, scores_b=ev_b.outputs.out_scores,
                         metrics=["dice"]).run(cwd=str(tmp_path))
    table = pd.read_csv(cmp.outputs.out_table, sep="\t")
    assert len(table) == 4 and (table["median_a"] > table["median_b"]).all()


def test_sink_node_rewrites_a_deleted_derivative_even_when_cached(tmp_path):
    from nipype.pipeline import engine as pe

    payload = tmp_path / "x.tsv"
    payload.write_text("a\n1\n")
    node = pe.Node(DerivativesDataSink(base_directory=str(tmp_path / "out"), source_file="/d/sub-01_T1w.nii.gz",
                                       in_file=str(payload), suffix="volumes"), name="ds", base_dir=str(tmp_path / "w"))
    out = Path(node.run().outputs.out_file)
    out.unlink()
    assert node.is_cached()[0]  # same inputs: Nipype would skip a normal node
    node.run()
    assert out.read_text() == "a\n1\n"


def test_scan_sidecars_interface(tmp_path):
    from synthseg_bids.interfaces.bids import ScanSidecars

    scan = tmp_path / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    scan.parent.mkdir(parents=True)
    scan.write_bytes(b"abc")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"qc": {"flag": True}, "label_table": [{"value": 0, "name": "Unknown"}]}))
    res = ScanSidecars(source_file=str(scan), in_results=str(results),
                       metadata={"bids_dir": str(tmp_path / "bids"), "ModelSHA256": "0" * 64}).run(cwd=str(tmp_path))
    assert res.outputs.dseg_meta["SpatialReference"] == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    assert res.outputs.volumes_meta["QC"] == {"flag": True} and res.outputs.volumes_meta["ModelSHA256"] == "0" * 64
    assert res.outputs.probseg_meta["Labels"] == ["Unknown"]


def test_subject_report_interface_lists_errors_and_always_runs(tmp_path):
    from synthseg_bids.interfaces.reports import SubjectReport

    report = SubjectReport(output_dir=str(tmp_path), subject="07", errors=["sub-07_T1w.nii.gz: broken header"])
    assert report.always_run
    out = Path(report.run(cwd=str(tmp_path)).outputs.out_report)
    assert out == tmp_path / "sub-07.html" and "broken header" in out.read_text()


def test_the_next_scan_does_not_change_a_segmentation_nodes_hash(tmp_path):
    """``next_file`` only schedules work: another selection of scans must reuse the cached node."""
    from synthseg_bids.interfaces.segmentation import SynthSeg

    scan = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), scan)
    hashes = set()
    for following in (None, "sub-02_T1w.nii.gz", "sub-03_T1w.nii.gz"):
        interface = SynthSeg(in_file=str(scan))
        if following:
            interface.inputs.next_file = following
        hashes.add(interface.inputs.get_hashval()[1])
    assert len(hashes) == 1
    interface.inputs.write_posteriors = True  # a real input still changes it
    assert interface.inputs.get_hashval()[1] not in hashes


def test_the_model_file_is_part_of_a_segmentation_nodes_hash(tmp_path):
    """The model choice is one input (a dict); Nipype hashes the file it names, so a changed model reruns the node."""
    from synthseg_bids.inference import ModelChoice
    from synthseg_bids.interfaces.segmentation import SynthSeg

    scan, model = tmp_path / "sub-01_T1w.nii.gz", tmp_path / "model.npz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), scan)
    model.write_bytes(b"first")
    interface = SynthSeg(in_file=str(scan), model=ModelChoice(file=model).to_dict())
    before = interface.inputs.get_hashval()[1]
    assert interface.inputs.get_hashval()[1] == before
    model.write_bytes(b"second, longer")
    assert interface.inputs.get_hashval()[1] != before
    interface.inputs.model = ModelChoice(folder=tmp_path, parcellation=True).to_dict()
    assert interface.inputs.get_hashval()[1] != before
