"""The generative model: label map -> random synthetic MRI (SynthSeg's domain randomisation).

- :class:`GeneratorSettings`: ranges and switches (SynthSeg's training defaults);
- :class:`GenerationSpec`, :func:`load_training_maps`, :class:`TrainingMaps`: generation
  labels/classes/priors and the training maps as uint8 index volumes (RAS);
- :class:`LabelsToImage`: the Keras layer (``keras.ops`` only: TensorFlow and JAX backends);
- :class:`BrainGenerator`: numpy front end (``generate() -> image, labels, affine``);
- :func:`estimate_priors`: per-class intensity priors from real images (numpy only).

Keras is imported lazily: ``from synthseg_bids.generator import GenerationSpec`` does not
import TensorFlow/JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

from .priors import estimate_priors
from .settings import GeneratorSettings
from .spec import GenerationSpec, TrainingMaps, load_training_maps

__all__ = [
    "BrainGenerator",
    "GenerationSpec",
    "GeneratorSettings",
    "LabelsToImage",
    "TrainingMaps",
    "estimate_priors",
    "load_training_maps",
]

_LAZY = {"LabelsToImage": ".layers", "BrainGenerator": ".brain_generator"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
