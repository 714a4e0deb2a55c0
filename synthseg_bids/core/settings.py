"""One serialisable settings mechanism shared by every layer.

Each layer defines its own frozen dataclass of settings (``GeneratorSettings``,
``NetworkSettings``, ``TrainingSettings``, ``InferenceSettings``, the app config)
by subclassing :class:`Settings`. This module gives them all the same behaviour:

- type checks on creation, driven by the annotations (``int``, ``float`` (an ``int`` is
  accepted), ``bool`` (never an ``int``, and an ``int`` is never a ``bool``), ``str``,
  ``Path``, ``Optional``/``Union``, ``Literal``, ``tuple[X, ...]``/``tuple[X, Y]`` and
  nested settings): a wrong type is a :class:`SettingsError` naming the field;
- validation of the values on creation (subclasses implement :meth:`Settings.validate`,
  raising :class:`SettingsError` with the field name and the problem);
- conversion to/from plain dicts, JSON and TOML (nested settings, tuples and
  :class:`pathlib.Path` fields are handled from the type annotations);
- unknown keys in a file are an error (a typo must not silently become a default).

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo(Settings):
...     size: int = 3
...     shape: tuple[int, ...] = (2, 2)
...     def validate(self):
...         if self.size <= 0:
...             raise SettingsError("size must be positive, got %d" % self.size)
>>> Demo.from_dict({"size": 4, "shape": [5, 6]})
Demo(size=4, shape=(5, 6))
>>> Demo.from_json(Demo(size=2).to_json()) == Demo(size=2)
True
>>> Demo(size=0)
Traceback (most recent call last):
...
synthseg_bids.core.settings.SettingsError: Demo: size must be positive, got 0
>>> Demo.from_dict({"size": "4"})
Traceback (most recent call last):
...
synthseg_bids.core.settings.SettingsError: Demo: size must be an integer, got '4' (str)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import numbers
import os
import tomllib
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Sequence, TypeVar

__all__ = ["Settings", "SettingsError", "recipe_path", "shipped_recipes"]

S = TypeVar("S", bound="Settings")


class SettingsError(ValueError):
    """A setting has an invalid value, or a settings file has an unknown key."""


class Settings:
    """Mixin for frozen dataclasses of settings (see module docstring)."""

    def __post_init__(self) -> None:
        # Normalise lists to tuples and strings to Paths according to annotations,
        # so that settings built from JSON compare equal to those built in code.
        hints = _type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            coerced = _coerce(hints[field.name], value)
            if coerced is not value:
                object.__setattr__(self, field.name, coerced)
            if not _matches(hints[field.name], coerced):
                raise SettingsError(
                    f"{type(self).__name__}: {field.name} must be {_describe(hints[field.name])}, "
                    f"got {coerced!r} ({type(coerced).__name__})"
                )
        try:
            self.validate()
        except SettingsError as err:
            raise SettingsError(f"{type(self).__name__}: {err}") from None

    def validate(self) -> None:
        """Raise :class:`SettingsError` if a value is out of range (override)."""

    def check_at_least(self, minimum: float, *names: str) -> None:
        """For :meth:`validate`: raise :class:`SettingsError` naming the first of the fields
        ``names`` whose value is below ``minimum``."""
        for name in names:
            value = getattr(self, name)
            if value < minimum:
                raise SettingsError(f"{name} must be >= {minimum}, got {value}")

    def check_shape(self, name: str, minimum: int = 1) -> None:
        """For :meth:`validate`: raise :class:`SettingsError` unless field ``name`` is ``None``
        or 3 integers, each at least ``minimum`` (an image or crop size)."""
        value = getattr(self, name)
        if value is not None and (len(value) != 3 or any(int(s) != s or s < minimum for s in value)):
            raise SettingsError(f"{name} must be 3 integers >= {minimum}, got {value!r}")

    def check_one_of(self, name: str, choices: Sequence[str]) -> None:
        """For :meth:`validate`: raise :class:`SettingsError` if field ``name`` is not one of ``choices``."""
        value = getattr(self, name)
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")

    # -- conversion ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-compatible dict (tuples -> lists, Paths -> str)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[S], data: dict[str, Any]) -> S:
        """Build from a dict, refusing unknown keys."""
        if not isinstance(data, dict):
            raise SettingsError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SettingsError(
                f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}; "
                f"valid names are {', '.join(sorted(names))}"
            )
        hints = _type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            hint = hints[key]
            if isinstance(hint, type) and issubclass(hint, Settings) and isinstance(value, dict):
                value = hint.from_dict(value)
            kwargs[key] = value
        return cls(**kwargs)

    def replace(self: S, **changes: Any) -> S:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls: type[S], text: str) -> S:
        return cls.from_dict(json.loads(text))

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(_drop_none(self.to_dict()))

    @classmethod
    def from_toml(cls: type[S], text: str) -> S:
        return cls.from_dict(tomllib.loads(text))

    @classmethod
    def from_file(cls: type[S], path: str | Path, section: str | None = None) -> S:
        """Read ``.json`` or ``.toml``; ``section`` picks one table of a larger file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise SettingsError(f"{path}: cannot read settings file ({err.strerror})") from None
        try:
            if path.suffix == ".toml":
                data = tomllib.loads(text)
            elif path.suffix == ".json":
                data = json.loads(text)
            else:
                raise SettingsError(f"{path}: settings files must end in .toml or .json")
        except (ValueError, tomllib.TOMLDecodeError) as err:
            raise SettingsError(f"{path}: not valid {path.suffix[1:].upper()} ({err})") from None
        if section is not None:
            if section not in data:
                raise SettingsError(f"{path}: no [{section}] section")
            data = data[section]
        try:
            return cls.from_dict(data)
        except SettingsError as err:
            raise SettingsError(f"{path}: {err}") from None

    def save(self, path: str | Path) -> Path:
        """Write as JSON or TOML (by suffix), atomically."""
        from .io import atomic_write_text

        path = Path(path)
        text = self.to_toml() if path.suffix == ".toml" else self.to_json()
        atomic_write_text(path, text)
        return path


def shipped_recipes() -> dict[str, Path]:
    """Name (file name without ``.toml``) -> path of each recipe shipped with the package.

    The recipes (``synthseg_bids/data/recipes/*.toml``) are the settings files of whole jobs
    (``synthseg-bids train``, ``evaluate-model``); the top-level ``workflows/`` folder of a
    source checkout links to them.
    """
    folder = Path(str(resources.files("synthseg_bids") / "data" / "recipes"))
    return {path.stem: path for path in sorted(folder.glob("*.toml"))}


def recipe_path(name_or_path: str | os.PathLike) -> Path:
    """A settings file: an existing path, else the name of a shipped recipe (``shipped_model``).

    Raises
    ------
    SettingsError
        Neither a file nor a shipped recipe's name (the message lists the names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_recipes()
    name = path.name[: -len(".toml")] if path.name.endswith(".toml") else path.name
    if path.parent == Path(".") and name in shipped:
        return shipped[name]
    raise SettingsError(f"{path}: no such settings file, and not the name of a shipped recipe "
                        f"({', '.join(shipped)})")


def _plain(value: Any) -> Any:
    if isinstance(value, Settings):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _drop_none(value: Any) -> Any:
    """TOML has no null: leave ``None`` fields out (they fall back to defaults)."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _coerce(hint: Any, value: Any) -> Any:
    """Lists -> tuples and str -> Path where the annotation says so."""
    if value is None:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            coerced = _coerce(arg, value)
            if coerced is not value:
                return coerced
        return value
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        return tuple(value)
    if origin is tuple and isinstance(value, tuple):
        return value
    if hint is Path and isinstance(value, str):
        return Path(value)
    if isinstance(hint, type) and issubclass(hint, Settings) and isinstance(value, dict):
        return hint.from_dict(value)
    return value


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _matches(hint: Any, value: Any) -> bool:
    """Whether ``value`` (after :func:`_coerce`) is of the annotated type."""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(arg, value) for arg in args)
    if origin is typing.Literal:
        return any(type(value) is type(arg) and value == arg for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(args[0], v) for v in value)
        if not args:
            return True
        return len(value) == len(args) and all(_matches(a, v) for a, v in zip(args, value))
    if origin is not None:  # other generics (list[...], dict[...]): check the container only
        return isinstance(value, origin)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    """``an integer``, ``a number``, ``None or a tuple of 3 integers``, ... for messages."""
    if hint is None or hint is type(None):
        return "None"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if args and all(arg == args[0] for arg in args):
            return f"a list of {len(args)} {_plural(args[0])}"
        return "a list (" + ", ".join(_describe(arg) for arg in args) + ")"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", Path: "a path"}
    if hint in names:
        return names[hint]
    if isinstance(hint, type) and issubclass(hint, Settings):
        return f"a table of {hint.__name__}"
    return f"a {getattr(hint, '__name__', hint)}"


def _plural(hint: Any) -> str:
    plurals = {int: "integers", float: "numbers", bool: "booleans", str: "strings", Path: "paths"}
    return plurals.get(hint, _describe(hint))
