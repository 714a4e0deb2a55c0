"""Training recipes (``synthseg_bids.training.recipe``) and the recipe files shipped with the package."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from synthseg_bids.core.settings import SettingsError, recipe_path, shipped_recipes
from synthseg_bids.generator import GeneratorSettings
from synthseg_bids.network import NetworkSettings
from synthseg_bids.training import TrainingSettings
from synthseg_bids.training.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]


def test_default_settings_file_holds_the_original_values():
    generator, network, training = load_recipe(ROOT / "workflows" / "default_model.toml")
    assert generator == GeneratorSettings()
    assert network == NetworkSettings(n_levels=5, conv_per_level=2, conv_size=3, base_features=24,
                                      feature_multiplier=2, activation="elu", normalisation="batch")
    assert (training.learning_rate, training.batch_size, training.wl2_epochs, training.steps_per_epoch) == (
        1e-4, 1, 5, 1000)
    assert training == TrainingSettings()


#: The recipes of the shipped model's training stages, first to last; each stage started from the
#: previous stage's weights (``provenance.initial_model`` in the model file, nested stage by stage).
SHIPPED_STAGES = ("shipped_model", "shipped_model_continued", "shipped_model_continued_160")
#: Settings that act after a run's last epoch (their defaults: nothing is done).
END_OF_RUN = {"batch_norm_images": 0, "batch_norm_shape": None, "average_last": 0}


def test_shipped_recipes_made_the_shipped_model():
    """Each stage's recipe holds the settings that the shipped model file records for that stage."""
    from synthseg_bids.inference.runtime import default_model_path
    from synthseg_bids.network import read_model_file

    info = read_model_file(default_model_path()).info
    stages = [{"training": info.training, "generator_settings": info.generator["settings"],
               "steps_trained": info.provenance["steps_trained"]}]
    earlier = info.provenance.get("initial_model")
    while earlier is not None:
        stages.insert(0, earlier)
        earlier = earlier.get("initial_model")
    assert len(stages) == len(SHIPPED_STAGES)
    for k, (name, stage) in enumerate(zip(SHIPPED_STAGES, stages)):
        generator, network, training = load_recipe(recipe_path(name))
        assert network == info.network
        recorded = TrainingSettings.from_dict(stage["training"]["settings"])
        if k < len(stages) - 1:  # the next stage started from a checkpoint, written before the end-of-run steps
            training, recorded = (dataclasses.replace(t, **END_OF_RUN) for t in (training, recorded))
        assert training == recorded, name
        assert generator == GeneratorSettings.from_dict(stage["generator_settings"]), name
        if k:  # the later stages ran their recipes' epochs to the end (the first was stopped at 9,500 steps)
            assert stage["steps_trained"] - stages[k - 1]["steps_trained"] == training.epochs * training.steps_per_epoch


def test_settings_file_errors_name_the_file(tmp_path):
    bad_table = tmp_path / "bad.toml"
    bad_table.write_text("[netwrok]\nn_levels = 3\n")
    with pytest.raises(SettingsError, match="bad.toml.*netwrok"):
        load_recipe(bad_table)
    bad_key = tmp_path / "key.toml"
    bad_key.write_text("[training]\nepoch = 3\n")
    with pytest.raises(SettingsError, match="key.toml.*epoch"):
        load_recipe(bad_key)
    bad_type = tmp_path / "type.toml"
    bad_type.write_text('[network]\nbase_features = "24"\n')
    with pytest.raises(SettingsError, match="type.toml: NetworkSettings: base_features must be an integer"):
        load_recipe(bad_type)


def test_train_command_reports_bad_settings(tmp_path):
    from synthseg_bids.cli.main import main

    bad_key = tmp_path / "key.toml"
    bad_key.write_text("[training]\nepoch = 3\n")
    assert main(["train", "--labels", str(tmp_path), "--out", str(tmp_path), "--settings", str(bad_key)]) == 1
    assert main(["train", "--labels", str(tmp_path), "--out", str(tmp_path), "--settings", "no_such_recipe"]) == 1
    with pytest.raises(SystemExit) as usage:  # training without label maps is a usage error
        main(["train", "--out", str(tmp_path)])
    assert usage.value.code == 2


def test_recipe_names_and_paths(tmp_path):
    assert set(shipped_recipes()) == {"shipped_model", "shipped_model_continued", "shipped_model_continued_160",
                                      "default_model", "evaluate_model"}
    assert recipe_path("default_model") == recipe_path("default_model.toml") == shipped_recipes()["default_model"]
    own = tmp_path / "default_model.toml"
    own.write_text("")
    assert recipe_path(own) == own  # an existing file wins over a shipped name
    with pytest.raises(SettingsError, match="not the name of a shipped recipe.*shipped_model"):
        recipe_path("shipped_modle")
    with pytest.raises(SettingsError, match="no such settings file"):
        recipe_path(tmp_path / "shipped_model.toml")  # a path that does not exist is never a name


def test_workflows_folder_links_to_the_package_recipes():
    """One home: every recipe in workflows/ is the package's file (a link), and every shipped recipe is there."""
    shipped = shipped_recipes()
    in_workflows = {p.stem: p for p in (ROOT / "workflows").glob("*.toml")}
    assert set(in_workflows) == set(shipped)
    for name, path in in_workflows.items():
        assert path.read_bytes() == shipped[name].read_bytes(), name
        assert path.resolve() == shipped[name].resolve(), f"workflows/{name}.toml is a second copy, not a link"
    readme = (ROOT / "workflows" / "README.md").read_text()
    for name in shipped:
        assert f"workflows/{name}.toml" in readme


def test_recipes_are_package_data():
    """setup.cfg's package_data globs take every recipe into the built package."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    globs = [g.strip() for g in config["options.package_data"]["synthseg_bids"].replace("\n", ",").split(",")]
    packaged = {p for g in globs if g for p in (ROOT / "synthseg_bids").glob(g) if p.is_file()}
    assert set(shipped_recipes().values()) <= {p.resolve() for p in packaged} | packaged
