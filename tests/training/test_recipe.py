"""The training recipe's settings file (workflows/train_model.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from synthseg_bids.core.settings import SettingsError
from synthseg_bids.generator import GeneratorSettings
from synthseg_bids.network import NetworkSettings
from synthseg_bids.training import TrainingSettings

ROOT = Path(__file__).resolve().parents[2]


def _recipe():
    spec = importlib.util.spec_from_file_location("train_model", ROOT / "workflows" / "train_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_settings_file_holds_the_original_values():
    generator, network, training = _recipe().load_settings(ROOT / "workflows" / "settings" / "default_model.toml")
    assert generator == GeneratorSettings()
    assert network == NetworkSettings(n_levels=5, conv_per_level=2, conv_size=3, base_features=24,
                                      feature_multiplier=2, activation="elu", normalisation="batch")
    assert (training.learning_rate, training.batch_size, training.wl2_epochs, training.steps_per_epoch) == (
        1e-4, 1, 5, 1000)
    assert training == TrainingSettings()


def test_settings_file_errors_name_the_file(tmp_path):
    recipe = _recipe()
    bad_table = tmp_path / "bad.toml"
    bad_table.write_text("[netwrok]\nn_levels = 3\n")
    with pytest.raises(SettingsError, match="bad.toml.*netwrok"):
        recipe.load_settings(bad_table)
    bad_key = tmp_path / "key.toml"
    bad_key.write_text("[training]\nepoch = 3\n")
    with pytest.raises(SettingsError, match="key.toml.*epoch"):
        recipe.load_settings(bad_key)
    assert recipe.main(["--out", str(tmp_path), "--settings", str(bad_key)]) == 1
