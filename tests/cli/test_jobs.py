"""The whole-job subcommands ``generate`` and ``evaluate-model`` (``train``: tests/training/test_recipe.py)."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import make_toy_label_map, toy_affine

from synthseg_bids.cli.main import SUBCOMMANDS, main

FAST_GENERATOR = "output_shape = [32, 32, 32]\nrandomise_resolution = false\nbias_field = false\n"


@pytest.fixture
def label_maps(tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    for seed in (0, 1):
        nib.save(nib.Nifti1Image(make_toy_label_map((40, 40, 40), seed=seed), toy_affine()),
                 folder / f"map_{seed}.nii.gz")
    settings = tmp_path / "generator.toml"
    settings.write_text(FAST_GENERATOR)
    return folder, settings


def test_subcommands_are_registered():
    for name in ("train", "generate", "evaluate-model"):
        assert name in SUBCOMMANDS
        done = subprocess.run([sys.executable, "-m", "synthseg_bids.cli.main", name, "--help"],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0 and f"usage: synthseg-bids {name}" in done.stdout


def test_generate_writes_pairs_and_montage(label_maps, tmp_path, capsys):
    folder, settings = label_maps
    out = tmp_path / "out"
    assert main(["generate", "--labels", str(folder), "--n", "2", "--seed", "3", "--settings", str(settings),
                 "--out", str(out)]) == 0
    assert "wrote 2 pairs" in capsys.readouterr().out
    present = set(np.unique(make_toy_label_map((40, 40, 40), seed=0))) | set(
        np.unique(make_toy_label_map((40, 40, 40), seed=1)))
    for i in range(2):
        image = nib.load(out / f"example_{i:02d}_image.nii.gz")
        labels = nib.load(out / f"example_{i:02d}_labels.nii.gz")
        assert image.shape == labels.shape == (32, 32, 32)
        assert image.get_data_dtype() == np.float32 and labels.get_data_dtype() == np.int32
        data = image.get_fdata()
        assert 0.0 <= data.min() and data.max() <= 1.0 and data.std() > 0
        assert set(np.unique(np.asarray(labels.dataobj))) <= present  # no label the maps do not have
    png = (out / "montage.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    # the seed is explicit: the same seed gives the same images, another seed others
    again, other = tmp_path / "again", tmp_path / "other"
    main(["generate", "--labels", str(folder), "--n", "1", "--seed", "3", "--settings", str(settings),
          "--out", str(again)])
    main(["generate", "--labels", str(folder), "--n", "1", "--seed", "4", "--settings", str(settings),
          "--out", str(other)])
    first = nib.load(out / "example_00_image.nii.gz").get_fdata()
    assert np.array_equal(first, nib.load(again / "example_00_image.nii.gz").get_fdata())
    assert not np.array_equal(first, nib.load(other / "example_00_image.nii.gz").get_fdata())


def test_generate_bad_inputs(tmp_path, capsys):
    assert main(["generate", "--labels", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert "synthseg-bids generate: error:" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("output_shape = 32\n")
    assert main(["generate", "--labels", str(tmp_path), "--settings", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "output_shape must be" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["generate", "--n", "0", "--out", str(tmp_path / "o")])
    assert usage.value.code == 2
    assert not (tmp_path / "o").exists()


def test_evaluate_model_settings(tmp_path, capsys):
    from synthseg_bids.cli.evaluate_model import ModelEvaluationSettings, build_parser, load_settings

    # the shipped recipe holds the defaults, and the command line overrides it
    assert load_settings(build_parser().parse_args([])) == ModelEvaluationSettings()
    args = build_parser().parse_args(["--seed", "5", "--contrast-shape", "80", "80", "80"])
    assert load_settings(args) == ModelEvaluationSettings(seed=5, contrast_shape=(80, 80, 80))
    assert ModelEvaluationSettings().class_means_t2()[1] == 200.0
    bad = tmp_path / "eval.toml"
    bad.write_text("contrast_shape = [80, 80, 81]\n")
    assert main(["evaluate-model", "--settings", str(bad), "--out-dir", str(tmp_path / "o")]) == 1
    assert "contrast_shape: z must be a multiple of 5" in capsys.readouterr().err
    assert main(["evaluate-model", "--contrast-shape", "80", "80", "82", "--out-dir", str(tmp_path / "o")]) == 1
    assert "command line" in capsys.readouterr().err
    bad.write_text("[t2_class_means]\nCSF = 200.0\n")
    assert main(["evaluate-model", "--settings", str(bad), "--out-dir", str(tmp_path / "o")]) == 1
    with pytest.raises(SystemExit) as usage:
        main(["evaluate-model", "--stages", "mni,curvs", "--out-dir", str(tmp_path / "o")])
    assert usage.value.code == 2
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_evaluate_model_mni_stage(tmp_path):
    """The MNI stage on the shipped model matches the documented figures (WM 0.870, GM 0.853 with flip)."""
    pytest.importorskip("nilearn")
    # a process of its own, as a user runs it: TensorFlow's thread count is fixed once per process
    job = subprocess.run([sys.executable, "-m", "synthseg_bids.cli.main", "evaluate-model", "--stages", "mni",
                          "--quick", "--threads", "2", "--out-dir", str(tmp_path)], capture_output=True, text=True)
    assert job.returncode == 0, job.stderr[-2000:]
    table = pd.read_csv(tmp_path / "mni152_dice.tsv", sep="\t").set_index("group")
    assert table.loc["white matter", "dice"] == pytest.approx(0.870, abs=0.03)  # --quick: no flip
    assert table.loc["grey matter", "dice"] == pytest.approx(0.853, abs=0.03)
    assert (tmp_path / "mni152_overlay.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_train_then_validate_and_install_best(label_maps, tmp_path, capsys):
    """The whole training job on a toy recipe: train, resume (nothing left to do), validate, install the best."""
    folder, _ = label_maps
    recipe = tmp_path / "toy.toml"
    recipe.write_text("[generator]\noutput_shape = [32, 32, 32]\n"
                      "[network]\nn_levels = 2\nbase_features = 4\nnormalisation = \"none\"\n"
                      "[training]\nepochs = 2\nwl2_epochs = 0\nsteps_per_epoch = 1\nkeep_checkpoints = 0\n")
    out = tmp_path / "model"
    assert main(["train", "--labels", str(folder), "--out", str(out), "--settings", str(recipe)]) == 0
    assert sorted(p.name for p in (out / "checkpoints").glob("epoch_*.npz")) == ["epoch_0001.npz", "epoch_0002.npz"]
    log = pd.read_csv(out / "training_log.tsv", sep="\t")
    assert list(log["epoch"]) == [1, 2]
    assert main(["train", "--out", str(out), "--settings", str(recipe), "--validate-only",
                 "--validation-labels", str(folder), "--n-validation", "1", "--install-best"]) == 0
    printed = capsys.readouterr().out
    assert "best checkpoint:" in printed and "installed" in printed
    from synthseg_bids.network import read_model_file

    info = read_model_file(out / "model_best.npz").info
    table = pd.read_csv(out / "validation" / "validation_dice.tsv", sep="\t")
    best = table.loc[table["mean_dice"].idxmax()]
    assert info.validation["epoch"] == int(best["epoch"]) and info.validation["n_images"] == 1
    assert info.validation["dice"]["mean_dice"] == pytest.approx(best["mean_dice"], abs=1e-4)


@pytest.mark.parametrize("argv, option", [
    (["bids", "out", "participant", "--nprocs", "0"], "--nprocs"),
    (["bids", "out", "participant", "--omp-nthreads", "two"], "--omp-nthreads"),
    (["segment", "--i", "a.nii", "--o", "b.nii", "--threads", "0"], "--threads"),
    (["generate", "--out", "o", "--n", "1.5"], "--n"),
    (["train", "--out", "o", "--n-validation", "-1"], "--n-validation"),
])
def test_positive_integers_share_one_check(argv, option, capsys):
    """Every command's count options go through cli.arguments.positive_int: one message, exit 2."""
    try:
        code = main(argv)
    except SystemExit as usage:  # the tool subcommands exit from argparse; the BIDS-App returns its status
        code = usage.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: argument {option}" in err  # (argparse names every alias: --nprocs/--nthreads/...)
    assert err.endswith(("must be >= 1, got 0", "must be >= 1, got -1", "not an integer: 'two'",
                         "not an integer: '1.5'"))
