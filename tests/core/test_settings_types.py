"""Every settings dataclass checks its field types on creation (field name in the message)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import pytest

from synthseg_bids.core.settings import Settings, SettingsError
from synthseg_bids.generator import GeneratorSettings
from synthseg_bids.inference import InferenceSettings
from synthseg_bids.network import NetworkSettings
from synthseg_bids.training import TrainingSettings
from synthseg_bids.training.settings import AugmentationSettings
from synthseg_bids.workflows.config import AppConfig


@dataclass(frozen=True)
class Typed(Settings):
    count: int = 1
    rate: float = 0.5
    switch: bool = False
    name: str = "a"
    path: Path = Path("x")
    mode: Literal["fast", "full"] = "full"
    shape: tuple[int, int, int] = (1, 2, 3)
    sizes: tuple[float, ...] = ()
    maybe: Optional[int] = None
    either: Union[int, str] = 0


@pytest.mark.parametrize(
    "field, value",
    [
        ("count", "2"), ("count", 2.5), ("count", True), ("count", None),
        ("rate", "0.1"), ("rate", False),
        ("switch", 1), ("switch", "yes"), ("switch", np.int64(0)),
        ("name", 3), ("name", None),
        ("path", 3),
        ("mode", "slow"), ("mode", 1),
        ("shape", (1, 2)), ("shape", [1, 2, 3.5]), ("shape", "abc"), ("shape", 3),
        ("sizes", ["a"]), ("sizes", (True,)),
        ("maybe", 1.5), ("maybe", "1"),
        ("either", 1.5), ("either", None),
    ],
)
def test_wrong_type_names_the_field(field, value):
    with pytest.raises(SettingsError, match=rf"^Typed: {field} must be .*, got "):
        Typed(**{field: value})
    with pytest.raises(SettingsError, match=rf"^Typed: {field} must be "):
        Typed.from_dict({field: value})


@pytest.mark.parametrize(
    "field, value",
    [
        ("count", 7), ("count", np.int32(7)),
        ("rate", 2), ("rate", np.float32(0.25)), ("rate", 1e-4),
        ("switch", True),
        ("path", "/tmp/p"),
        ("mode", "fast"),
        ("shape", [4, 5, 6]), ("shape", (np.int64(4), 5, 6)),
        ("sizes", [1, 2.5]), ("sizes", ()),
        ("maybe", None), ("maybe", 3),
        ("either", "x"), ("either", 2),
    ],
)
def test_right_types_pass(field, value):
    assert getattr(Typed.from_dict({field: value}), field) == (tuple(value) if isinstance(value, list) else
                                                              Path(value) if field == "path" else value)


def test_int_is_kept_as_given_for_float_fields():
    assert Typed(rate=2).rate == 2.0


# -- every settings class of the package ---------------------------------------------
# (class, field, a value of the wrong type); the message must name the class and field.
WRONG = [
    (AppConfig, "nprocs", "2"),
    (AppConfig, "nprocs", 2.5),
    (AppConfig, "mem_gb", "8"),
    (AppConfig, "write_posteriors", 1),
    (AppConfig, "participant_label", "01"),
    (AppConfig, "model", 5),
    (AppConfig, "verbosity", True),
    (GeneratorSettings, "output_shape", [160, 160]),
    (GeneratorSettings, "output_shape", [160.0, 160, 160]),
    (GeneratorSettings, "nonlin_std", "4"),
    (GeneratorSettings, "deform", "yes"),
    (GeneratorSettings, "integration_steps", 7.0),
    (GeneratorSettings, "data_res", [1, 1]),
    (NetworkSettings, "n_levels", 5.0),
    (NetworkSettings, "base_features", "24"),
    (NetworkSettings, "activation", 1),
    (NetworkSettings, "dropout", None),
    (TrainingSettings, "epochs", "505"),
    (TrainingSettings, "learning_rate", "1e-4"),
    (TrainingSettings, "batch_size", True),
    (TrainingSettings, "class_weights", ["1"]),
    (AugmentationSettings, "crop_shape", [160, 160]),
    (AugmentationSettings, "flip", 0),
    (InferenceSettings, "threads", "4"),
    (InferenceSettings, "threads", 2.0),
    (InferenceSettings, "flip", "false"),
    (InferenceSettings, "crop", [160, 160, "160"]),
    (InferenceSettings, "percentiles", [0.5]),
    (InferenceSettings, "max_voxels", 1e6),
]


@pytest.mark.parametrize("cls, field, value", WRONG, ids=[f"{c.__name__}.{f}={v!r}" for c, f, v in WRONG])
def test_every_settings_class_checks_types(cls, field, value):
    with pytest.raises(SettingsError, match=rf"^{cls.__name__}: {field} must be "):
        cls.from_dict({field: value})


def test_app_config_from_issue():
    """The two cases of the issue: a string and a fraction for an integer field."""
    with pytest.raises(SettingsError, match="nprocs must be an integer, got '2'"):
        AppConfig.from_dict({"nprocs": "2"})
    with pytest.raises(SettingsError, match="nprocs must be an integer, got 2.5"):
        AppConfig.from_dict({"nprocs": 2.5})
    assert AppConfig.from_dict({"nprocs": 2, "mem_gb": 8}).nprocs == 2


def test_wrong_type_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "inference.toml"
    path.write_text('threads = "4"\n')
    with pytest.raises(SettingsError, match=r"inference\.toml: InferenceSettings: threads must be "):
        InferenceSettings.from_file(path)


def test_defaults_and_replace_still_work():
    for cls in (AppConfig, GeneratorSettings, NetworkSettings, TrainingSettings, AugmentationSettings,
                InferenceSettings):
        assert cls.from_dict(cls().to_dict()) == cls()
    with pytest.raises(SettingsError, match="InferenceSettings: threads must be "):
        InferenceSettings().replace(threads="2")
