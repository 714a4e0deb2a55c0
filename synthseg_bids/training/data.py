"""Input pipelines (``keras.utils.PyDataset``, backend-agnostic) and image preparation.

Every random choice is drawn from ``numpy.random.default_rng([seed, epoch, step])``: a
batch depends only on the seed, the epoch and the step, never on how many batches were
fetched before (prefetching, symbolic model building, resuming). The training loop sets
``dataset.epoch`` at the start of each epoch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from ..core.io import ImageError, load_image, load_label_map
from ..core.labels import EXTRA_LABEL_MERGES, LabelTable
from ..generator.spec import reorient_to_ras
from .settings import AugmentationSettings

__all__ = [
    "ImageLabelCrops",
    "LabelMapBatches",
    "TrainingPair",
    "label_channels",
    "load_training_pairs",
    "normalise_intensities",
]


class _SeededBatches(keras.utils.PyDataset):
    """``steps_per_epoch`` batches per epoch, batch ``step`` of ``epoch`` drawn with
    ``default_rng([seed, epoch, step])`` (``epoch`` is set by the training loop), so which
    data a step sees depends on (seed, epoch, step) only and survives a resume."""

    def __init__(self, batch_size: int, steps_per_epoch: int, seed: int):
        super().__init__(workers=1, use_multiprocessing=False)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = int(steps_per_epoch)
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps_per_epoch


class LabelMapBatches(_SeededBatches):
    """Batches of training label maps (generation indices) chosen at random.

    Parameters
    ----------
    indices
        ``TrainingMaps.indices``: uint8 array (N, X, Y, Z).
    batch_size, steps_per_epoch
        Batch size and batches per epoch (``len(dataset)``).
    seed
        Host seed; batch ``step`` of ``epoch`` holds maps
        ``default_rng([seed, epoch, step]).integers(N, size=batch_size)``.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, steps_per_epoch: int, seed: int):
        super().__init__(batch_size, steps_per_epoch, seed)
        if indices.ndim != 4 or len(indices) == 0:
            raise ValueError(f"expected label maps as an array (N, X, Y, Z) with N >= 1, got shape {indices.shape}")
        self.indices = indices

    def choice(self, epoch: int, step: int) -> np.ndarray:
        """Indices of the label maps used at ``(epoch, step)``."""
        rng = np.random.default_rng([self.seed, epoch, step])
        return rng.integers(0, len(self.indices), size=self.batch_size)

    def __getitem__(self, step: int) -> np.ndarray:
        return self.indices[self.choice(self.epoch, step)]


class TrainingPair:
    """A real image prepared for training: RAS, intensities in [0, 1], label channels.

    Attributes
    ----------
    image : float32 array (X, Y, Z)
    channels : uint8 array (X, Y, Z), channel index in the label table per voxel.
    name : str, the image file name (for messages).
    """

    def __init__(self, image: np.ndarray, channels: np.ndarray, name: str):
        self.image = image
        self.channels = channels
        self.name = name


class ImageLabelCrops(_SeededBatches):
    """Random augmented crops of (image, label channel) pairs for supervised training.

    Batch items are ``((image (B, *crop, 1) float32, channels (B, *crop) uint8),)``; the
    trainer one-hot encodes the channels on the device.

    Parameters
    ----------
    pairs
        Prepared pairs (:func:`load_training_pairs`).
    flip_permutation
        ``LabelTable.flip_permutation`` (channel swap for left-right flips).
    augmentation
        Crop shape and augmentation ranges.
    batch_size, steps_per_epoch, seed
        As in :class:`LabelMapBatches`.
    """

    def __init__(
        self,
        pairs: Sequence[TrainingPair],
        flip_permutation: np.ndarray,
        augmentation: AugmentationSettings,
        batch_size: int,
        steps_per_epoch: int,
        seed: int,
    ):
        super().__init__(batch_size, steps_per_epoch, seed)
        if not pairs:
            raise ValueError("no training pairs")
        self.pairs = list(pairs)
        self.flip_permutation = np.asarray(flip_permutation, dtype=np.uint8)
        self.augmentation = augmentation

    def __getitem__(self, step: int) -> tuple[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, self.epoch, step])
        images, channels = [], []
        for _ in range(self.batch_size):
            image, labels = self._sample(rng)
            images.append(image)
            channels.append(labels)
        return ((np.stack(images)[..., None], np.stack(channels)),)

    def _sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        aug = self.augmentation
        pair = self.pairs[int(rng.integers(len(self.pairs)))]
        image, labels = _random_crop(pair.image, pair.channels, aug.crop_shape, rng)
        if aug.flip and rng.random() < 0.5:
            image = image[::-1]
            labels = self.flip_permutation[labels[::-1]]
        gamma = float(np.exp(aug.gamma_std * rng.standard_normal()))
        scale = float(np.exp(aug.intensity_scale_std * rng.standard_normal()))
        image = np.clip(image, 0.0, 1.0) ** gamma * scale
        return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(labels)


def _random_crop(
    image: np.ndarray, labels: np.ndarray, shape: Sequence[int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random window of ``shape`` (zero-padded where the volume is smaller)."""
    out_image = np.zeros(shape, np.float32)
    out_labels = np.zeros(shape, np.uint8)
    src, dst = [], []
    for size, want in zip(image.shape, shape):
        if size >= want:
            start = int(rng.integers(0, size - want + 1))
            src.append(slice(start, start + want))
            dst.append(slice(0, want))
        else:
            offset = (want - size) // 2
            src.append(slice(0, size))
            dst.append(slice(offset, offset + size))
    out_image[tuple(dst)] = image[tuple(src)]
    out_labels[tuple(dst)] = labels[tuple(src)]
    return out_image, out_labels


def normalise_intensities(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Map the ``low``-``high`` percentile range to [0, 1] and clip (SynthSeg's rescaling)."""
    lo, hi = np.percentile(image, [low, high])
    if hi <= lo:
        return np.zeros(image.shape, np.float32)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def label_channels(
    values: np.ndarray, table: LabelTable, path: str | os.PathLike, unknown_labels: str = "error"
) -> np.ndarray:
    """Channel index (uint8) of each voxel's label value.

    Values of the table map to their channel, values in
    :data:`~synthseg_bids.core.labels.EXTRA_LABEL_MERGES` to their structure's channel;
    other values raise :class:`~synthseg_bids.core.io.ImageError` naming ``path``
    (``unknown_labels='error'``) or become background (``'background'``).
    """
    present = np.unique(values)
    lut = {int(v): int(v) for v in table.values}
    lut.update({k: v for k, v in EXTRA_LABEL_MERGES.items() if v in lut})
    unknown = [int(v) for v in present if int(v) not in lut]
    if unknown and unknown_labels == "error":
        raise ImageError(
            path, f"has label values not in the model's label table: {unknown} (set unknown_labels='background')"
        )
    mapped = np.array([lut.get(int(v), 0) for v in present], dtype=np.int64)
    channels = table.index_of(mapped)[np.searchsorted(present, values)]
    return channels.astype(np.uint8)


def load_training_pairs(
    image_paths: Sequence[str | os.PathLike],
    label_paths: Sequence[str | os.PathLike],
    table: LabelTable,
    *,
    resolution_mm: float = 1.0,
    unknown_labels: str = "error",
) -> list[TrainingPair]:
    """Load (image, label map) files for supervised training.

    Each pair must share its grid (shape and affine); voxels must be isotropic
    ``resolution_mm`` (within 5 %; resample beforehand otherwise). Images are reoriented
    to RAS and rescaled to [0, 1] (:func:`normalise_intensities`).

    Raises
    ------
    ImageError
        Unreadable files, mismatched grids, wrong voxel size or unknown labels; the
        message names the file.
    """
    if len(image_paths) != len(label_paths):
        raise ValueError(f"{len(image_paths)} images but {len(label_paths)} label maps")
    pairs = []
    for image_path, label_path in zip(image_paths, label_paths):
        image = load_image(image_path)
        labels = load_label_map(label_path)
        if image.shape != labels.shape or not np.allclose(image.affine, labels.affine, atol=1e-3):
            raise ImageError(label_path, f"is not on the grid of {Path(image_path).name} (shape or affine differ)")
        zooms = image.zooms
        if np.any(np.abs(zooms - resolution_mm) > 0.05 * resolution_mm):
            raise ImageError(
                image_path, f"has voxel size {tuple(np.round(zooms, 3))} mm; resample to {resolution_mm} mm first"
            )
        data, _ = reorient_to_ras(image.data, image.affine)
        values, _ = reorient_to_ras(labels.data, labels.affine)
        channels = label_channels(values, table, label_path, unknown_labels)
        pairs.append(TrainingPair(normalise_intensities(data), channels, Path(image_path).name))
    return pairs
