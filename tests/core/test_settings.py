"""The settings mechanism: validation, JSON/TOML round trips, unknown keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from synthseg_bids.core.settings import Settings, SettingsError


@dataclass(frozen=True)
class Inner(Settings):
    sigma: float = 0.5
    shape: tuple[int, ...] = (4, 4, 4)

    def validate(self):
        if self.sigma < 0:
            raise SettingsError(f"sigma must be >= 0, got {self.sigma}")


@dataclass(frozen=True)
class Outer(Settings):
    name: str = "x"
    path: Path | None = None
    inner: Inner = field(default_factory=Inner)
    ranges: tuple[float, ...] = (0.1, 0.2)


def test_round_trips(tmp_path):
    s = Outer(name="y", path=Path("/a/b"), inner=Inner(sigma=2.0, shape=(1, 2, 3)))
    assert Outer.from_json(s.to_json()) == s
    assert Outer.from_toml(s.to_toml()) == s
    for suffix in (".json", ".toml"):
        assert Outer.from_file(s.save(tmp_path / f"s{suffix}")) == s


def test_lists_and_strings_are_coerced():
    s = Outer.from_dict({"path": "/x", "ranges": [1, 2], "inner": {"shape": [5, 5, 5]}})
    assert s.path == Path("/x") and s.ranges == (1, 2) and s.inner.shape == (5, 5, 5)


def test_none_fields_survive_toml():
    assert Outer.from_toml(Outer().to_toml()).path is None


def test_validation_names_class_and_field():
    with pytest.raises(SettingsError, match=r"Inner: sigma must be >= 0"):
        Inner(sigma=-1)
    with pytest.raises(SettingsError, match="Inner"):
        Outer.from_dict({"inner": {"sigma": -3}})


def test_unknown_key_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="unknown setting.*sigmaa"):
        Inner.from_dict({"sigmaa": 1})
    bad = tmp_path / "bad.toml"
    bad.write_text("sigma = [")
    with pytest.raises(SettingsError, match=r"bad\.toml: not valid TOML"):
        Inner.from_file(bad)
    with pytest.raises(SettingsError, match="cannot read"):
        Inner.from_file(tmp_path / "missing.toml")


def test_section_of_larger_file(tmp_path):
    path = tmp_path / "all.toml"
    path.write_text("[inner]\nsigma = 3.0\n[other]\nx = 1\n")
    assert Inner.from_file(path, section="inner").sigma == 3.0
    with pytest.raises(SettingsError, match=r"no \[nope\] section"):
        Inner.from_file(path, section="nope")
