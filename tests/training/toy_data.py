"""Small training data for the training tests: a toy labelled head with a matching image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import make_toy_label_map, toy_affine

from synthseg_bids.core.io import save_image
from synthseg_bids.core.labels import LabelTable

#: Structures of the toy label map (extra-cerebral 258 is mapped to background).
TOY_TABLE = LabelTable.from_values([0, 2, 3, 4, 16, 24, 41, 42, 43])
_INTENSITY = {0: 0.0, 2: 0.9, 3: 0.6, 4: 0.15, 16: 0.75, 24: 0.3, 41: 0.9, 42: 0.6, 43: 0.15}


def toy_pair(folder: Path, shape=(16, 16, 16), seed=0) -> tuple[Path, Path]:
    """Write a toy (image, label map) pair; returns their paths."""
    labels = make_toy_label_map(shape, seed=seed)
    labels[labels == 258] = 0
    lut = np.zeros(labels.max() + 1, np.float32)
    for value, intensity in _INTENSITY.items():
        lut[value] = intensity
    noise = 0.03 * np.random.default_rng(seed).standard_normal(shape)
    image = (lut[labels] + noise).astype(np.float32)
    affine = toy_affine()
    image_path = save_image(image, affine, folder / f"toy{seed}_T1w.nii.gz")
    label_path = save_image(labels, affine, folder / f"toy{seed}_dseg.nii.gz")
    return image_path, label_path
