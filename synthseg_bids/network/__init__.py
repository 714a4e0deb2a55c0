"""The segmentation network: U-Net settings, builder and the self-describing model file;
SynthSeg's published Keras 2 ``.h5`` networks (:mod:`.official`, :mod:`.keras2_h5`).

Keras is imported lazily (inside the functions), so importing this package is cheap.
"""

from .model_file import FORMAT_VERSION, ModelFileError, ModelInfo, load_model, read_model_file, save_model
from .official import (
    OfficialArchitecture,
    OfficialModelError,
    OfficialNetwork,
    export_h5,
    is_keras2_h5,
    read_official,
)
from .settings import NetworkSettings
from .unet import build_unet, count_parameters, logits_model

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "ModelInfo",
    "NetworkSettings",
    "OfficialArchitecture",
    "OfficialModelError",
    "OfficialNetwork",
    "build_unet",
    "count_parameters",
    "export_h5",
    "is_keras2_h5",
    "load_model",
    "logits_model",
    "read_model_file",
    "read_official",
    "save_model",
]
