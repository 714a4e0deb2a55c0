"""Training recipes: the three settings tables of one TOML file, and installing the best checkpoint.

A recipe file (``workflows/shipped_model.toml``, SynthSeg's ``workflows/default_model.toml``)
holds ``[generator]`` (:class:`~synthseg_bids.generator.GeneratorSettings`), ``[network]``
(:class:`~synthseg_bids.network.NetworkSettings`) and ``[training]``
(:class:`~synthseg_bids.training.TrainingSettings`); missing keys take the defaults, unknown
tables or keys are an error. The recipes shipped with the package are in
``synthseg_bids/data/recipes/`` (:func:`synthseg_bids.core.settings.recipe_path`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from ..core.settings import SettingsError
from ..generator.settings import GeneratorSettings
from ..network.settings import NetworkSettings
from .settings import TrainingSettings

__all__ = ["RECIPE_TABLES", "install_best_checkpoint", "load_recipe"]

#: The tables of a recipe file.
RECIPE_TABLES = ("generator", "network", "training")


def load_recipe(path: str | os.PathLike | None) -> tuple[GeneratorSettings, NetworkSettings, TrainingSettings]:
    """(generator, network, training) settings of a recipe file; ``None``: all defaults."""
    tables: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            tables = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise SettingsError(f"{path}: cannot read settings ({err})") from None
        unknown = sorted(set(tables) - set(RECIPE_TABLES))
        if unknown:
            raise SettingsError(f"{path}: unknown table(s) {', '.join(unknown)}; use [generator], [network], [training]")
    try:
        return (
            GeneratorSettings.from_dict(tables.get("generator", {})),
            NetworkSettings.from_dict(tables.get("network", {})),
            TrainingSettings.from_dict(tables.get("training", {})),
        )
    except SettingsError as err:
        raise SettingsError(f"{path}: {err}") from None


def install_best_checkpoint(table: Any, path: str | os.PathLike, n_images: int) -> Path:
    """Save the best checkpoint of a validation table as a model file (float16 weights).

    Parameters
    ----------
    table
        The :func:`~synthseg_bids.training.validate_checkpoints` table (``attrs["best_checkpoint"]``).
    path
        Model file to write (atomically).
    n_images
        Number of validation images, recorded with the scores in the model's metadata
        (``validation``: epoch, n_images, Dice per structure and mean; NaN as null).
    """
    from ..network import load_model, save_model

    best = table.attrs["best_checkpoint"]
    row = table.loc[table["checkpoint"] == best].iloc[0]
    model, info = load_model(best)
    scores = {k: (None if v != v else float(v)) for k, v in row.drop(["epoch", "checkpoint"]).items()}
    info = info.replace(validation={"epoch": int(row["epoch"]), "n_images": int(n_images), "dice": scores})
    return save_model(Path(path), model, info, weights_dtype="float16")
