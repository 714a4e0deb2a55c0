"""Training of the segmentation U-Net: synthetic (SynthSeg) and supervised.

Settings and losses import without a Keras backend; the training functions import Keras
on first use (``synthseg_bids.training.train_synthetic`` etc. are loaded lazily).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .settings import AugmentationSettings, TrainingSettings

__all__ = [
    "AugmentationSettings",
    "TrainingSettings",
    "latest_checkpoint",
    "make_validation_set",
    "read_checkpoint",
    "train_supervised",
    "train_synthetic",
    "validate_checkpoints",
]

_LAZY = {
    "latest_checkpoint": ".checkpoints",
    "read_checkpoint": ".checkpoints",
    "train_supervised": ".supervised",
    "train_synthetic": ".synthetic",
    "make_validation_set": ".validation",
    "validate_checkpoints": ".validation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
