"""The QC network's input: a hard segmentation cut to a cube around the brain, as QC groups."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .tables import QC_GROUP_NAMES, qc_group_of

__all__ = ["QC_CROP_SIZE", "qc_network_input"]

#: Side of the cube the QC network sees in ``mri_synthseg`` (voxels, 1 mm).
QC_CROP_SIZE = 224


def qc_network_input(channels: np.ndarray, label_values: Sequence[int], *, size: int = QC_CROP_SIZE) -> np.ndarray:
    """The QC network's input from a hard segmentation, as ``mri_synthseg`` 7.3.2 prepares it.

    The segmentation (channel indices of the segmentation network, on its padded 1 mm grid) is cut
    to a ``size``\\ :sup:`3` cube centred on the bounding box of its foreground (zero-padded where
    the cube leaves the volume; the whole volume's corner when there is no foreground), its labels
    are replaced by their QC groups (:func:`qc_group_of`) and one-hot encoded.

    The foreground is what FreeSurfer's ``MakeShape`` layer uses: channel index neither 0 nor 24.
    (With the sorted 2.0 labels, channel 24 is label 47, the right cerebellum cortex; the code
    probably meant CSF, label 24, but the channel index is what it compares, and parity with
    ``mri_synthseg`` needs the same.)

    Parameters
    ----------
    channels
        (X, Y, Z) integer channel indices (argmax of the posteriors).
    label_values
        Label value of each channel (the network's sorted label list).
    size
        Side of the cube.

    Returns
    -------
    numpy.ndarray
        (1, size, size, size, 9) float32 one-hot QC groups.
    """
    channels = np.asarray(channels)
    if channels.ndim != 3:
        raise ValueError(f"channels must be a 3D array, got shape {channels.shape}")
    shape = np.array(channels.shape)
    foreground = np.argwhere((channels != 0) & (channels != 24))
    if len(foreground):
        low = foreground.min(axis=0)
        high = np.minimum(foreground.max(axis=0) + 1, shape)
    else:
        low = np.zeros(3, dtype=int)
        high = np.minimum(shape, size)
    extent = high - low
    low = low - np.ceil((size - extent) / 2).astype(int)
    high = high + np.floor((size - extent) / 2).astype(int)
    start, stop = np.maximum(low, 0), np.minimum(high, shape)
    crop = channels[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
    padding = [(int(a), int(b)) for a, b in zip(np.maximum(-low, 0), np.maximum(high - shape, 0))]
    crop = np.pad(crop, padding)
    groups = qc_group_of(np.asarray(label_values)[crop])
    one_hot = np.zeros((1, *groups.shape, len(QC_GROUP_NAMES) + 1), dtype=np.float32)
    np.put_along_axis(one_hot[0], groups[..., None], 1.0, axis=-1)
    return one_hot
