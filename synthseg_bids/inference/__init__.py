"""Prediction: segment scans of any contrast, resolution and orientation.

Keras and TensorFlow are imported only when a model file is loaded or a first scan is
segmented (the steps around the network are compiled backend functions, :mod:`.prediction`),
so importing this package is cheap. The device (GPU/CPU) and CPU threads are fixed by the
first model loaded in a process (:mod:`.device`).

Examples
--------
>>> from synthseg_bids.inference import InferenceSettings, Segmenter, write_result
>>> segmenter = Segmenter("model.npz", InferenceSettings(device="cpu", threads=4))  # doctest: +SKIP
>>> for result in segmenter.segment_many(["a_T1w.nii.gz", "b_FLAIR.nii.gz"]):          # doctest: +SKIP
...     write_result(result, labels=f"{result.source.stem}_dseg.nii.gz")
"""

from .device import DeviceError, configure_device, visible_gpus
from .preprocess import PreparedScan, extract_window, head_window, normalise_intensities, prepare_scan
from .qc import QC_GROUPS, QualityControl, quality_control
from .results import SegmentationResult, write_result
from .runtime import Network, default_model_path
from .segmenter import Segmenter, cached_segmenter
from .settings import DEVICES, POSTPROCESSING, InferenceSettings

__all__ = [
    "DEVICES",
    "POSTPROCESSING",
    "QC_GROUPS",
    "DeviceError",
    "InferenceSettings",
    "Network",
    "PreparedScan",
    "QualityControl",
    "SegmentationResult",
    "Segmenter",
    "cached_segmenter",
    "configure_device",
    "default_model_path",
    "extract_window",
    "head_window",
    "normalise_intensities",
    "prepare_scan",
    "quality_control",
    "visible_gpus",
    "write_result",
]
