"""Workflow factories: graph construction, and a parent pipeline embedding the segmentation workflow."""

from __future__ import annotations

import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from synthseg_bids.core.settings import SettingsError
from synthseg_bids.inference import ModelChoice
from synthseg_bids.workflows.base import init_participant_wf
from synthseg_bids.workflows.config import AppConfig
from synthseg_bids.workflows.evaluation import init_evaluation_wf
from synthseg_bids.workflows.group import init_group_wf
from synthseg_bids.workflows.segmentation import init_segmentation_wf
from synthseg_bids.workflows.training import init_training_wf

from helpers import make_toy_label_map, toy_affine


def _names(wf):
    return {f"{wf.name}.{n}" for n in wf.list_node_names()}


def test_segmentation_wf_interface():
    wf = init_segmentation_wf(write_posteriors=True)
    assert wf.name == "segmentation_wf"
    assert set(wf.get_node("inputnode").inputs.copyable_trait_names()) == {"in_file", "source_file"}
    outputs = set(wf.get_node("outputnode").inputs.copyable_trait_names())
    assert outputs == {"out_dseg", "out_probseg", "out_parc_dseg", "out_volumes", "out_results", "out_figure",
                       "out_thumbnail"}


def test_participant_wf_has_one_branch_per_scan(tmp_path):
    config = AppConfig(bids_dir=tmp_path, output_dir=tmp_path / "out", work_dir=tmp_path / "work")
    wf = init_participant_wf(config=config, subjects={
        "01": ["/d/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", "/d/sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz"],
        "02": ["/d/sub-02/anat/sub-02_T1w.nii.gz"], "03": []})
    segment_nodes = sorted(n for n in _names(wf) if n.endswith("segmentation_wf.segment"))
    assert len(segment_nodes) == 3
    assert any("sub_01_wf.scan_sub_01_ses_1_T2w_wf" in n for n in segment_nodes)


def test_config_round_trip_toml(tmp_path):
    config = AppConfig(bids_dir=tmp_path, output_dir=tmp_path / "o", participant_label=("01",), nprocs=2)
    path = config.save(tmp_path / "config.toml")
    assert AppConfig.from_file(path) == config
    assert config.threads_per_scan == 2 and config.replace(nprocs=1).threads_per_scan == 0
    choice = ModelChoice(folder=tmp_path / "models", robust=True, parcellation=True, network_qc=True)
    path = config.replace(model=choice).save(tmp_path / "official.toml")
    assert tomllib.loads(path.read_text())["model"] == {"folder": str(tmp_path / "models"), "v1": False,
                                                         "robust": True, "parcellation": True, "network_qc": True}
    assert AppConfig.from_file(path).model == choice


def test_config_of_release_0_1_0_is_read(tmp_path):
    """0.1.0 wrote the model keys at the top level, ``model`` being the file that ran."""
    common = f'bids_dir = "{tmp_path}"\noutput_dir = "{tmp_path / "out"}"\nanalysis_level = "participant"\n'
    flags = "v1 = false\nrobust = true\nparc = true\nnetwork_qc = false\n"
    old = tmp_path / "folder.toml"
    old.write_text(common + f'model = "{tmp_path}/fs/synthseg_robust_2.0.h5"\nmodel_dir = "{tmp_path}/fs"\n' + flags)
    assert AppConfig.from_file(old).model == ModelChoice(folder=tmp_path / "fs", robust=True, parcellation=True)
    old.write_text(common + f'model = "{tmp_path}/mine.npz"\n' + flags.replace("true", "false"))
    assert AppConfig.from_file(old).model == ModelChoice(file=tmp_path / "mine.npz")
    old.write_text(common + f'parc = true\n[model]\nfolder = "{tmp_path}/fs"\n')
    with pytest.raises(SettingsError, match=f"{old}: AppConfig: give the model as a \\[model\\] table or as the flat "
                       "keys parc"):
        AppConfig.from_file(old)


def test_segmentation_node_gets_the_model_choice(tmp_path):
    choice = ModelChoice(folder=tmp_path, v1=True, parcellation=True)
    wf = init_segmentation_wf(model=choice)
    assert ModelChoice.from_dict(wf.get_node("segment").inputs.model) == choice
    assert ("segment", "out_parc_dseg") in _connections_into(wf, "outputnode")
    default = init_segmentation_wf()
    assert ModelChoice.from_dict(default.get_node("segment").inputs.model) == ModelChoice()
    assert ("segment", "out_parc_dseg") not in _connections_into(default, "outputnode")


def _connections_into(wf, node_name: str) -> set[tuple[str, str]]:
    target = wf.get_node(node_name)
    return {(source.name, out) for source, _, data in wf._graph.in_edges(target, data=True)
            for out, _ in data["connect"]}


def test_group_and_evaluation_wf_build(tmp_path):
    (tmp_path / "a_volumes.tsv").write_text("participant_id\n")
    wf = init_group_wf(output_dir=str(tmp_path), volumes_files=[str(tmp_path / "a_volumes.tsv")],
                       predictions=["p.nii.gz"],
                       reference_dir=str(tmp_path), compare_dir=str(tmp_path))
    assert {"group_wf.gather_volumes", "group_wf.evaluation_wf.compare", "group_wf.ds_comparison"} <= _names(wf)
    assert "evaluation_wf.compare" not in _names(init_evaluation_wf())


def test_training_wf_build():
    wf = init_training_wf(network_settings={"base_features": 4, "n_levels": 2})
    assert {"training_wf.generate_validation", "training_wf.train", "training_wf.validate"} <= _names(wf)
    assert wf.get_node("train").inputs.network_settings == {"base_features": 4, "n_levels": 2}


def test_evaluation_wf_runs(tmp_path):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir(), pred_dir.mkdir()
    preds = []
    for i in range(3):
        ref = make_toy_label_map(seed=i)
        nib.save(nib.Nifti1Image(ref, toy_affine()), ref_dir / f"sub-{i}_dseg.nii.gz")
        ref[::7] = 0
        preds.append(pred_dir / f"sub-{i}_desc-synthsegT1w_dseg.nii.gz")
        nib.save(nib.Nifti1Image(ref, toy_affine()), preds[-1])
    wf = init_evaluation_wf()
    wf.base_dir = str(tmp_path / "work")
    wf.inputs.inputnode.predictions = [str(p) for p in preds]
    wf.inputs.inputnode.reference_dir = str(ref_dir)
    wf.config["execution"]["crashdump_dir"] = str(tmp_path)
    wf.run(plugin="Linear")
    scores = pd.read_csv(tmp_path / "work" / "evaluation_wf" / "evaluate" / "scores.tsv", sep="\t")
    assert len(set(scores["subject"])) == 3
    # the workflow's table is the evaluation core's on the same files (pairing, labels, metrics) ...
    # (paired by BIDS entities; the workflow's row key may add the contrast to the subject column)
    from synthseg_bids.bids import match_key
    from synthseg_bids.core.evaluation import evaluate_folders

    expected = evaluate_folders(ref_dir, pred_dir, key=match_key)
    columns = ["structure", "label", "metric"]
    got = scores.sort_values(["subject", *columns], kind="stable").reset_index(drop=True)
    expected = expected.sort_values(["subject", *columns], kind="stable").reset_index(drop=True)
    assert len(got) == len(expected) > 0
    assert got["subject"].nunique() == expected["subject"].nunique() == 3
    pd.testing.assert_frame_equal(got[columns].astype(str), expected[columns].astype(str))
    np.testing.assert_allclose(got["value"].to_numpy(float), expected["value"].to_numpy(float), rtol=1e-5,
                               equal_nan=True)  # the TSV holds 6 significant digits
    # ... and its Dice equals a brute-force count on the arrays
    subjects = sorted(got["subject"].unique())
    dice = got[got["metric"] == "dice"].set_index(["subject", "label"])["value"]
    for i, pred in enumerate(preds):
        ref, out = make_toy_label_map(seed=i), np.asarray(nib.load(pred).dataobj)
        for label in (2, 3, 4, 16, 24, 41, 42, 43):
            a, b = ref == label, out == label
            assert dice[(subjects[i], label)] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()), rel=1e-5)


def _passthrough(dseg, volumes):
    return dseg, volumes


def test_parent_pipeline_embeds_segmentation_wf(tmp_path, tiny_model):
    """As an fMRIPrep-style pipeline would: a file from an upstream node into inputnode.in_file."""
    labels = make_toy_label_map((32, 32, 32))
    image = tmp_path / "T1.nii.gz"
    nib.save(nib.Nifti1Image((labels > 0) * 50.0 + labels.astype(np.float32), toy_affine()), image)

    parent = pe.Workflow(name="parent_wf", base_dir=str(tmp_path / "work"))
    upstream = pe.Node(niu.IdentityInterface(fields=["t1w_preproc"]), name="anat_preproc")
    upstream.inputs.t1w_preproc = str(image)
    seg_wf = init_segmentation_wf(model=ModelChoice(file=tiny_model), inference_settings={
        "flip": False, "postprocess": "none", "smoothing_sigma": 0.0, "min_size": 16})
    collect = pe.Node(niu.Function(function=_passthrough, output_names=["dseg", "volumes"]), name="downstream")
    parent.connect([
        (upstream, seg_wf, [("t1w_preproc", "inputnode.in_file")]),
        (seg_wf, collect, [("outputnode.out_dseg", "dseg"), ("outputnode.out_volumes", "volumes")]),
    ])  # fmt: skip
    parent.config["execution"]["crashdump_dir"] = str(tmp_path)
    parent.run(plugin="Linear")
    from nipype.utils.filemanip import loadpkl

    result = loadpkl(tmp_path / "work" / "parent_wf" / "downstream" / "result_downstream.pklz").outputs
    seg = nib.load(result.dseg)
    assert seg.shape == (32, 32, 32) and np.allclose(seg.affine, toy_affine())
    table = pd.read_csv(result.volumes, sep="\t")
    assert len(table) == 1 and table.loc[0, "source"] == "T1.nii.gz"
    assert Path(tmp_path / "work" / "parent_wf").is_dir()


@pytest.mark.slow
def test_training_wf_runs(tmp_path):
    maps = []
    for i in range(2):
        maps.append(tmp_path / f"map{i}.nii.gz")
        nib.save(nib.Nifti1Image(make_toy_label_map(seed=i), toy_affine()), maps[-1])
    wf = init_training_wf(
        generator_settings={"output_shape": [32, 32, 32]},
        network_settings={"base_features": 4, "n_levels": 2},
        training_settings={"epochs": 1, "steps_per_epoch": 1, "wl2_epochs": 0},
        n_validation=1,
    )
    wf.base_dir = str(tmp_path / "work")
    wf.inputs.inputnode.label_maps = [str(m) for m in maps]
    wf.config["execution"]["crashdump_dir"] = str(tmp_path)
    wf.run(plugin="Linear")
    validation = pd.read_csv(tmp_path / "work" / "training_wf" / "validate" / "validation.tsv", sep="\t")
    assert len(validation) == 1 and "mean_dice" in validation.columns
