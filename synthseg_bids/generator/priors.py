"""Intensity priors of the Gaussian mixture estimated from real images (numpy only).

Re-implements SynthSeg's ``SynthSeg/estimate_priors.py`` (B. Billot et al.,
github.com/BBillot/SynthSeg): for every subject, each class's intensities (the voxels of
all its labels) give a robust mean (median) and a robust std (median absolute deviation
scaled by 1.4826, consistent with the std of a Gaussian); across subjects, the mean and
the std of these per-subject values are the two rows of the prior arrays read by the
generator with ``prior_distribution='normal'``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.io import ImageError, load_image, load_label_map

__all__ = ["MAD_TO_STD", "class_statistics", "estimate_priors", "rescale_robust"]

#: Factor turning a median absolute deviation into a Gaussian standard deviation (1 / Phi^-1(3/4)).
MAD_TO_STD = 1.482602218505602

ArrayOrPath = np.ndarray | str | os.PathLike


def rescale_robust(image: np.ndarray, low_percentile: float = 2.0, high_percentile: float = 98.0) -> np.ndarray:
    """Clip to the given percentiles and rescale linearly to [0, 255] (lab2im ``rescale_volume``)."""
    low, high = np.percentile(image, [low_percentile, high_percentile])
    if high <= low:
        return np.zeros_like(image, dtype=np.float64)
    return (np.clip(image, low, high) - low) / (high - low) * 255.0


def _grouped_median(groups: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Median of ``values`` per group 0..n_groups-1 (NaN for empty groups), and the group sizes."""
    order = np.lexsort((values, groups))
    sorted_values = values[order]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    present = counts > 0
    low = starts + np.maximum(counts - 1, 0) // 2
    high = starts + counts // 2
    median = np.full(n_groups, np.nan)
    median[present] = 0.5 * (sorted_values[low[present]] + sorted_values[high[present]])
    return median, counts


def class_statistics(
    image: np.ndarray,
    label_map: np.ndarray,
    generation_labels: Sequence[int] | np.ndarray,
    classes: Sequence[int] | np.ndarray,
    *,
    keep_strictly_positive: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust mean (median) and std (1.4826 * MAD) of each class in one image.

    Parameters
    ----------
    image, label_map
        Arrays of one shape.
    generation_labels, classes
        Label values and the class (0..K-1) of each.
    keep_strictly_positive
        Ignore voxels <= 0 except in the class of the first label (background), as SynthSeg.

    Returns
    -------
    means, stds : numpy.ndarray, shape (K,)
        NaN for classes without voxels.
    """
    labels = np.asarray(generation_labels, dtype=np.int64)
    classes = np.asarray(classes, dtype=np.int64)
    n_classes = int(classes.max()) + 1
    lut = np.full(max(int(labels.max()), int(label_map.max())) + 1, -1, dtype=np.int64)
    lut[labels] = classes
    voxel_class = lut[np.clip(label_map.ravel(), 0, None)]
    values = image.ravel().astype(np.float64)
    keep = voxel_class >= 0
    if keep_strictly_positive:
        keep &= (values > 0) | (voxel_class == classes[0])
    voxel_class, values = voxel_class[keep], values[keep]
    median, _ = _grouped_median(voxel_class, values, n_classes)
    deviation = np.abs(values - median[voxel_class])
    mad, _ = _grouped_median(voxel_class, deviation, n_classes)
    return median, MAD_TO_STD * mad


def _as_array(item: ArrayOrPath, label: bool) -> tuple[np.ndarray, Path | None]:
    if isinstance(item, np.ndarray):
        return item, None
    path = Path(item)
    return (load_label_map(path).data if label else load_image(path).data), path


def estimate_priors(
    images: Sequence[ArrayOrPath],
    label_maps: Sequence[ArrayOrPath],
    generation_labels: Sequence[int] | np.ndarray,
    classes: Sequence[int] | np.ndarray | None = None,
    *,
    rescale: bool = True,
    keep_strictly_positive: bool = True,
    out_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian priors of each class's mean and std over a set of subjects.

    Parameters
    ----------
    images, label_maps
        Matching lists of arrays or image files (same shape per pair).
    generation_labels
        Label values to use (G,).
    classes
        Class 0..K-1 of each label (labels of one class are pooled); default one per label.
    rescale
        Rescale each image to [0, 255] between its 2nd and 98th percentiles first (SynthSeg).
    keep_strictly_positive
        Ignore non-positive intensities outside the background class.
    out_dir
        If given, write ``prior_means.npy`` and ``prior_stds.npy`` there.

    Returns
    -------
    prior_means : numpy.ndarray, shape (2, K)
        Row 0: mean over subjects of the class medians; row 1: their std.
    prior_stds : numpy.ndarray, shape (2, K)
        Row 0: mean over subjects of the class robust stds; row 1: their std.
        Classes absent from a subject are left out of that class's averages.

    Raises
    ------
    ValueError
        If the lists differ in length or are empty, or classes do not cover 0..K-1.
    ImageError
        If an image and its label map differ in shape (naming the file).
    """
    if len(images) != len(label_maps) or not images:
        raise ValueError(f"need as many images as label maps (at least one), got {len(images)} and {len(label_maps)}")
    labels = np.asarray(generation_labels, dtype=np.int64)
    classes = np.arange(labels.size) if classes is None else np.asarray(classes, dtype=np.int64)
    if classes.shape != labels.shape or not np.array_equal(np.unique(classes), np.arange(classes.max() + 1)):
        raise ValueError("classes must have one value per generation label and use every value 0..K-1")
    means, stds = [], []
    for image_item, label_item in zip(images, label_maps):
        image, image_path = _as_array(image_item, label=False)
        label_map, label_path = _as_array(label_item, label=True)
        if image.shape != label_map.shape:
            raise ImageError(label_path or image_path or Path("<array>"),
                             f"label map shape {label_map.shape} differs from image shape {image.shape}")
        image = rescale_robust(image) if rescale else image
        m, s = class_statistics(image, label_map, labels, classes, keep_strictly_positive=keep_strictly_positive)
        means.append(m)
        stds.append(s)
    means, stds = np.array(means), np.array(stds)
    prior_means = np.stack([np.nanmean(means, axis=0), np.nanstd(means, axis=0)]).astype(np.float32)
    prior_stds = np.stack([np.nanmean(stds, axis=0), np.nanstd(stds, axis=0)]).astype(np.float32)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        np.save(out_dir / "prior_means.npy", prior_means)
        np.save(out_dir / "prior_stds.npy", prior_stds)
    return prior_means, prior_stds
