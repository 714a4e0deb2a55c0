"""Supervised crops: determinism, flips with left/right label swap, padding."""

from __future__ import annotations

import numpy as np

from synthseg_bids.core.labels import LabelTable
from synthseg_bids.training.data import ImageLabelCrops, TrainingPair, normalise_intensities
from synthseg_bids.training.settings import AugmentationSettings

TABLE = LabelTable.from_values([0, 2, 41])


def _pair():
    channels = np.zeros((8, 6, 6), np.uint8)
    channels[:4] = 1  # left half of the array (x small): Left-Cerebral-White-Matter
    channels[4:] = 2  # right half: Right-Cerebral-White-Matter
    image = np.where(channels == 1, 0.2, 0.8).astype(np.float32)
    return TrainingPair(image, channels, "toy")


def test_flip_swaps_left_and_right_labels():
    aug = AugmentationSettings(crop_shape=(8, 6, 6), flip=True, intensity_scale_std=0, gamma_std=0)
    data = ImageLabelCrops([_pair()], TABLE.flip_permutation, aug, batch_size=1, steps_per_epoch=40, seed=0)
    flipped = unflipped = 0
    for step in range(40):
        ((image, channels),) = data[step]
        assert image.shape == (1, 8, 6, 6, 1) and channels.shape == (1, 8, 6, 6)
        # whatever the flip, the left half of the array is labelled Left-... (channel 1)
        assert np.all(channels[0, :4] == 1) and np.all(channels[0, 4:] == 2)
        if image[0, 0, 0, 0, 0] > 0.5:  # the bright (right) hemisphere moved to the left: a flip
            flipped += 1
        else:
            unflipped += 1
    assert flipped > 5 and unflipped > 5


def test_crops_are_deterministic_and_padded():
    aug = AugmentationSettings(crop_shape=(4, 8, 4))
    data = ImageLabelCrops([_pair()], TABLE.flip_permutation, aug, batch_size=2, steps_per_epoch=3, seed=4)
    data.epoch = 1
    ((a_image, a_channels),) = data[2]
    data[0]
    ((b_image, b_channels),) = data[2]
    assert np.array_equal(a_image, b_image) and np.array_equal(a_channels, b_channels)
    assert a_image.shape == (2, 4, 8, 4, 1)
    assert np.all(a_channels[:, :, 0] == 0) and np.all(a_channels[:, :, 7] == 0)  # y padded 6 -> 8 (1 each side)
    assert np.all(a_image[:, :, 0] == 0)


def test_normalise_intensities_maps_percentiles_to_unit_range():
    values = np.arange(1001, dtype=np.float32)
    out = normalise_intensities(values)
    lo, hi = np.percentile(values, [0.5, 99.5])  # 5 and 995
    assert out[0] == 0 and out[-1] == 1
    np.testing.assert_allclose(out[500], (500 - lo) / (hi - lo), rtol=1e-6)
    assert np.all(normalise_intensities(np.ones(10)) == 0)
