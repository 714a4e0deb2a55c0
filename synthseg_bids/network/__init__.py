"""The segmentation network: U-Net settings, builder and the self-describing model file.

Keras is imported lazily (inside the functions), so importing this package is cheap.
"""

from .model_file import FORMAT_VERSION, ModelFileError, ModelInfo, load_model, read_model_file, save_model
from .settings import NetworkSettings
from .unet import build_unet, count_parameters, logits_model

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "ModelInfo",
    "NetworkSettings",
    "build_unet",
    "count_parameters",
    "load_model",
    "logits_model",
    "read_model_file",
    "save_model",
]
