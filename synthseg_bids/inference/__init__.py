"""Prediction: segment scans of any contrast, resolution and orientation.

Keras and TensorFlow are imported only when a model file is loaded or a first scan is
segmented (the steps around the network are compiled backend functions, :mod:`.prediction`),
so importing this package is cheap. The device (GPU/CPU) and CPU threads are fixed by the
first model loaded in a process (:mod:`.device`).

Modules, one idea each:

- :mod:`.protocol`: the calls every segmenter answers (:class:`SegmenterProtocol`), and
  :mod:`.results`: the one result type (:class:`SegmentationResult`) and :func:`write_result`;
- :mod:`.segmenter`: :class:`Segmenter`, the pipeline of one network (read, pre-process,
  network, device steps, clean-up, labels on the input grid, volumes, QC), and its
  process-wide cache; :mod:`.official`: :class:`~.official.OfficialSegmenter`, SynthSeg's
  published networks (segmentation, parcellation, QC) around a :class:`Segmenter`;
- :mod:`.runtime`: :class:`Network`, a model compiled for inference on its device;
  :mod:`.windows`: inputs too large for one pass, in overlapping patches
  (:func:`~.windows.sliding_window_inference`); :mod:`.ensemble`: the shifted-window
  test-time ensemble; :mod:`.prediction`: the compiled steps on the device (flip average,
  smoothing, masks, argmax, sums);
- :mod:`.preprocess` (geometry and intensities), :mod:`.qc`, :mod:`.settings`,
  :mod:`.device` and :mod:`.precision` (where and in what arithmetic the network runs),
  :mod:`.memory` (memory estimates), :mod:`.look_ahead` (the next scan segmented in the
  background: the one way scans overlap).

The U-Net's full-resolution decoder level in y slabs is graph surgery on the layers that
:func:`~synthseg_bids.network.build_unet` names, so it lives next to it
(:mod:`synthseg_bids.network.unet_slabs`).

Examples
--------
>>> from synthseg_bids.inference import InferenceSettings, Segmenter, write_result
>>> segmenter = Segmenter("model.npz", InferenceSettings(device="cpu", threads=4))  # doctest: +SKIP
>>> scans = ["a_T1w.nii.gz", "b_FLAIR.nii.gz"]
>>> for scan, next_scan in zip(scans, scans[1:] + [None]):                          # doctest: +SKIP
...     result = segmenter.segment(scan)
...     if next_scan is not None:
...         segmenter.segment_ahead(next_scan)  # read and segmented while this one is written
...     write_result(result, labels=scan.replace(".nii.gz", "_dseg.nii.gz"))
"""

from .device import DeviceError, configure_device, visible_gpus
from .model_choice import ModelChoice
from .preprocess import PreparedScan, extract_window, head_window, normalise_intensities, prepare_scan
from .protocol import SegmenterProtocol
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
    "ModelChoice",
    "Network",
    "PreparedScan",
    "QualityControl",
    "SegmentationResult",
    "Segmenter",
    "SegmenterProtocol",
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
