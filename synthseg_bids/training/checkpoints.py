"""Training checkpoints: a model file plus the state needed to resume exactly.

A checkpoint ``<model_dir>/checkpoints/epoch_NNNN.npz`` (NNNN = epochs completed) is a
model file (:func:`synthseg_bids.network.save_model`, float32 weights; it loads with
:func:`~synthseg_bids.network.load_model` like any model) with, in addition:

- ``optimizer/NNNN``: every optimizer variable (iteration count, Adam moments, loss
  scale) in ``optimizer.variables`` order;
- ``state/NNNN``: the trainer's other variables (random-generator states of the
  synthetic generator and of dropout layers);
- ``extra.checkpoint`` metadata: epoch, phase, global step, seed, the names and shapes
  of those arrays, and the backend that wrote it.

Host-side randomness (which label map or crop a step uses) is a pure function of
``(seed, epoch, step)`` (see :mod:`synthseg_bids.training.data`), so the epoch counter
is the whole host RNG state. Arrays are plain numbers: a checkpoint written on JAX
resumes on TensorFlow (the device random streams then differ, being backend-specific).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..network.model_file import (
    ModelFileContents,
    ModelFileError,
    ModelInfo,
    read_model_file,
    save_model,
    set_weights_from,
)

__all__ = [
    "CHECKPOINT_FOLDER",
    "Checkpoint",
    "TrainingState",
    "checkpoint_path",
    "latest_checkpoint",
    "list_checkpoints",
    "read_checkpoint",
    "save_checkpoint",
]

#: Sub-folder of the model folder holding the checkpoints.
CHECKPOINT_FOLDER = "checkpoints"
_NAME = re.compile(r"^epoch_(\d{4,})\.npz$")


@dataclass(frozen=True)
class TrainingState:
    """Counters of a training run at the end of an epoch.

    Attributes
    ----------
    epoch : int
        Epochs completed.
    phase : str
        Phase of the last completed epoch: 'wl2' (warm-up) or 'main'.
    global_step : int
        Optimiser steps completed over all phases.
    seed : int
        Seed of the run (host choices are a function of seed, epoch and step).
    """

    epoch: int
    phase: str
    global_step: int
    seed: int


def checkpoint_path(model_dir: str | os.PathLike, epoch: int) -> Path:
    """``<model_dir>/checkpoints/epoch_NNNN.npz``."""
    return Path(model_dir) / CHECKPOINT_FOLDER / f"epoch_{epoch:04d}.npz"


def list_checkpoints(model_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every checkpoint in ``model_dir``, by increasing epoch."""
    folder = Path(model_dir) / CHECKPOINT_FOLDER
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(model_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest epoch, or ``None``."""
    found = list_checkpoints(model_dir)
    return found[-1][1] if found else None


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from disk (see :func:`read_checkpoint`)."""

    path: Path
    info: ModelInfo
    state: TrainingState
    contents: ModelFileContents

    def restore_weights(self, unet: Any) -> None:
        """Set the U-Net's weights (names, count and shapes checked)."""
        set_weights_from(self.contents, unet)

    def restore_optimizer(self, optimizer: Any) -> None:
        """Assign the stored optimizer variables to a *built* optimizer."""
        self._assign("optimizer", optimizer.variables)

    def restore_state(self, variables: Sequence[Any]) -> None:
        """Assign the stored random-generator states to ``variables``."""
        self._assign("state", variables)

    def _assign(self, kind: str, variables: Sequence[Any]) -> None:
        records = self.contents.extra["checkpoint"][f"{kind}_variables"]
        if len(records) != len(variables):
            raise ModelFileError(
                self.path,
                f"holds {len(records)} {kind} variables but the training run has {len(variables)} "
                "(different optimizer, mixed-precision policy or generator?)",
            )
        for index, (record, variable) in enumerate(zip(records, variables)):
            value = self.contents.arrays.get(f"{kind}/{index:04d}")
            if value is None:
                raise ModelFileError(self.path, f"{kind} array {index} is missing")
            if tuple(value.shape) != tuple(variable.shape):
                raise ModelFileError(
                    self.path,
                    f"{kind} variable {record['name']} has shape {tuple(value.shape)}, "
                    f"the run's {variable.path} has {tuple(variable.shape)}",
                )
            variable.assign(value.astype(np.dtype(_numpy_dtype(variable))))


def save_checkpoint(
    path: str | os.PathLike,
    unet: Any,
    info: ModelInfo,
    state: TrainingState,
    optimizer: Any,
    state_variables: Sequence[Any],
) -> Path:
    """Write a checkpoint (float32 weights, optimizer and generator state), atomically."""
    arrays: dict[str, np.ndarray] = {}
    records: dict[str, list[dict]] = {}
    for kind, variables in (("optimizer", optimizer.variables), ("state", state_variables)):
        records[kind] = []
        for index, variable in enumerate(variables):
            value = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
            arrays[f"{kind}/{index:04d}"] = value
            records[kind].append({"name": variable.path, "shape": list(value.shape), "dtype": str(value.dtype)})
    import keras

    extra = {
        "checkpoint": {
            "epoch": int(state.epoch),
            "phase": state.phase,
            "global_step": int(state.global_step),
            "seed": int(state.seed),
            "backend": keras.backend.backend(),
            "optimizer_variables": records["optimizer"],
            "state_variables": records["state"],
        }
    }
    return save_model(path, unet, info, weights_dtype="float32", extra_arrays=arrays, extra_metadata=extra)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint; :class:`ModelFileError` (naming the file) if it is not one."""
    contents = read_model_file(path)
    meta = contents.extra.get("checkpoint")
    if not isinstance(meta, dict):
        raise ModelFileError(contents.path, "is a model file, not a training checkpoint (no training state)")
    try:
        state = TrainingState(
            epoch=int(meta["epoch"]),
            phase=str(meta["phase"]),
            global_step=int(meta["global_step"]),
            seed=int(meta["seed"]),
        )
        for kind in ("optimizer", "state"):
            if not isinstance(meta[f"{kind}_variables"], list):
                raise TypeError(f"{kind}_variables is not a list")
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(contents.path, f"has invalid training state ({err})") from None
    if state.phase not in ("wl2", "main"):
        raise ModelFileError(contents.path, f"has unknown training phase {state.phase!r}")
    return Checkpoint(path=contents.path, info=contents.info, state=state, contents=contents)


def _numpy_dtype(variable: Any) -> str:
    from keras import backend

    return backend.standardize_dtype(variable.dtype)
