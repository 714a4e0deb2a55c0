"""Methods text: one describer per choice, the workflows' ``__desc__``, CITATION files, the model card.

References: the settings written by the test, the shipped model's sha256 from
``hashlib``, and its accuracy from the measurement tables in ``docs/model/``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from report_data import segmentation_record

from synthseg_bids.reports.methods import (
    DESCRIBERS,
    describe_record,
    model_card,
    workflow_description,
    write_citation,
)
from synthseg_bids.reports.subject import methods_paragraphs
from synthseg_bids.network.model_file import read_model_file

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "synthseg_bids" / "data" / "default_model.npz"


def test_each_describer_reads_only_its_part_of_the_record():
    configured = {"settings": {"flip": False, "postprocess": "none", "smoothing_sigma": 0, "percentiles": [1, 99],
                               "intensity_clip": [0, 80]}}
    texts = [describe(configured) for describe in DESCRIBERS]
    assert all(describe({}) == "" for describe in DESCRIBERS)  # nothing recorded: nothing said
    text = describe_record(configured)
    assert text == " ".join(t for t in texts if t)
    assert "between their 1th and 99th percentiles, after clipping intensities to [0, 80]" in text
    assert "Test-time left/right flip augmentation was off." in text and "no connected-component" in text
    assert "smoothed" not in text and "ran with" not in text  # no backend: a configuration, not a run
    ran = describe_record(segmentation_record(backend="tensorflow"))
    assert "ran with Keras 3.15.1 on TensorFlow 0.7.2 on the CPU" in ran and "5-level U-Net" in ran


def test_methods_name_the_shipped_model_and_split_differing_records():
    sha = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    record = segmentation_record(backend="tensorflow")
    paragraphs, card = methods_paragraphs({"sub-01_T1w": {"Segmentation": record, "ModelSHA256": sha}})
    text = "\n".join(paragraphs)
    steps = read_model_file(SHIPPED).info.provenance["steps_trained"]  # the card must agree with the model file
    assert card is not None and card["sha256"] == sha and f"{steps:,} steps" in text and sha in text
    assert "each structure group was reduced to its largest connected component" in text
    other, none = methods_paragraphs({"a": {"Segmentation": record, "ModelSHA256": "cd" * 32},
                                      "b": {"Segmentation": segmentation_record(flip=False), "ModelSHA256": "cd" * 32}})
    assert none is None and any(p.startswith("For a: ") for p in other) and any(p.startswith("For b: ") for p in other)


def test_workflow_description_follows_the_configuration_and_citation_files(tmp_path):
    from synthseg_bids.workflows.base import init_participant_wf
    from synthseg_bids.workflows.config import AppConfig

    settings = tmp_path / "settings.toml"
    settings.write_text('flip = false\npostprocess = "brain"\nqc_min_confidence = 0.55\n')
    config = AppConfig(bids_dir=tmp_path, output_dir=tmp_path / "out", inference_settings=settings)
    wf = init_participant_wf(config=config, subjects={"01": ["/d/sub-01/anat/sub-01_T1w.nii.gz"]},
                             versions={"version": "9.9.9", "model_sha256": "ef" * 32, "nipype": "1.11.0"})
    text = workflow_description(wf)
    paragraphs = text.split("\n\n")
    assert len(paragraphs) == 3 and paragraphs[0].startswith("Anatomical scans were segmented with synthseg-bids 9.9.9")
    assert "Test-time left/right flip augmentation was off." in paragraphs[1]
    assert "only the largest connected component of the whole brain" in paragraphs[1]
    assert "confidence below 0.55" in paragraphs[2] and "flip dice" not in paragraphs[2]
    md, bib = write_citation(tmp_path / "logs", text)
    assert md.read_text().startswith("# Methods\n\n" + paragraphs[0]) and "Billot B" in md.read_text()
    keys = [line.split("{")[1].rstrip(",") for line in bib.read_text().splitlines() if line.startswith("@")]
    assert keys == ["billot2023synthseg", "gorgolewski2011nipype", "yarkoni2019pybids"]


def test_model_card_matches_the_shipped_file_and_the_measurements():
    sha = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    card = model_card(sha)
    assert card is not None, "default_model_card.json describes another file: update it with the model"
    assert model_card("0" * 64) is None
    docs = ROOT / "docs" / "model"
    if not docs.is_dir():
        pytest.skip("docs/model (the measurement tables) not in this checkout")
    curve = pd.read_csv(docs / "validation_dice.tsv", sep="\t")
    assert int(curve["step"].iloc[-1]) == card["steps_trained"]
    mni = pd.read_csv(docs / "mni152_dice.tsv", sep="\t").set_index("group")["dice"]
    contrast = pd.read_csv(docs / "contrast_resolution_dice.tsv", sep="\t")
    t1 = contrast[(contrast.condition == "t1 1mm") & (contrast.grid == "input")]["mean_dice"].iloc[0]
    t2 = contrast[(contrast.condition == "t2 5mm") & (contrast.grid == "input")]["mean_dice"].iloc[0]
    expected = [curve["mean_dice"].iloc[-1], t1, t2, mni["white matter"], mni["grey matter"]]
    assert [a["value"] for a in card["accuracy"]] == pytest.approx(expected, abs=6e-4)


def test_precision_and_ensemble_are_described_as_configured_and_as_ran():
    from synthseg_bids.reports.methods import describe_ensemble, describe_precision

    auto = {"settings": {"precision": "auto", "shifts": 2, "flip": True}}
    assert "in bfloat16 where the device has native bfloat16 arithmetic" in describe_precision(auto)
    assert "averaged over 2 copies" in describe_ensemble(auto) and "each with its flipped copy" in describe_ensemble(auto)
    ran = {**auto, "precision": "float32"}  # what a run records: the precision it resolved to
    assert describe_precision(ran) == "The network computed in float32."
    assert "bfloat16 arithmetic" in describe_precision({"precision": "bfloat16"})
    assert describe_ensemble({"settings": {"shifts": 1}}) == ""  # one window: no ensemble to describe
    text = describe_record(ran)
    assert text.index("computed in float32") < text.index("averaged over 2 copies")
