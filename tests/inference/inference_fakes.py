"""Fake networks and phantoms for the inference tests.

The fake networks are plain numpy callables wrapped in :class:`Network`, the documented
seam of :class:`~synthseg_bids.inference.Segmenter`: their posteriors are a known
function of the input, so geometric properties can be checked exactly.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from synthseg_bids.core.labels import default_label_table
from synthseg_bids.inference import Network

from helpers import make_toy_label_map

#: Intensity of each label of the toy phantom (left and right differ, so a per-voxel
#: network can tell them apart). 258 (scalp) is segmented as background.
PHANTOM_INTENSITIES = {0: 0.0, 258: 0.3, 24: 0.15, 3: 0.5, 42: 0.6, 2: 0.9, 41: 1.0, 4: 0.2, 43: 0.25, 16: 0.75}
#: The same with equal intensities on both sides (left/right told apart by context only).
SYMMETRIC_INTENSITIES = {**PHANTOM_INTENSITIES, 42: 0.5, 41: 0.9, 43: 0.2}


def phantom(shape=(40, 40, 40), seed=0, texture=0.0, symmetric=False) -> tuple[np.ndarray, np.ndarray]:
    """(intensities float32, labels int32) of the toy head; ``texture`` adds smooth seeded noise."""
    labels = make_toy_label_map(shape, seed=seed)
    lut = np.zeros(labels.max() + 1, np.float32)
    for value, intensity in (SYMMETRIC_INTENSITIES if symmetric else PHANTOM_INTENSITIES).items():
        lut[value] = intensity
    image = lut[labels]
    if texture:
        noise = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 1.5)
        image = image + np.float32(texture) * (noise / noise.std()).astype(np.float32) * (labels > 0)
    truth = np.where(labels == 258, 0, labels).astype(np.int32)
    return image.astype(np.float32), truth


def _intensity_logits(x: np.ndarray, width: float, intensities: dict = PHANTOM_INTENSITIES) -> np.ndarray:
    table = default_label_table()
    logits = np.full(x.shape + (len(table),), -1e3, dtype=np.float32)
    for value, intensity in intensities.items():
        channel = int(table.index_of([0 if value == 258 else value])[0])
        logits[..., channel] = np.maximum(logits[..., channel], -((x - intensity) ** 2) / (2 * width**2))
    return logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=-1, keepdims=True)
    out = np.exp(logits)
    out /= out.sum(axis=-1, keepdims=True)
    return out.astype(np.float32)


def voxel_network(width: float = 0.03, calls: list | None = None) -> Network:
    """Per-voxel network: posteriors depend only on each voxel's intensity."""

    def predict(batch: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.append(batch.shape)
        return _softmax(_intensity_logits(batch[0, ..., 0], width))[None]

    return Network(predict=predict, label_table=default_label_table(), resolution_mm=1.0, size_multiple=8)


def lopsided_network(width: float = 0.03, bias: float = 0.5, gain: float = 20.0) -> Network:
    """A translation-equivariant network that is *not* left/right symmetric.

    For :func:`phantom` with ``symmetric=True``. Intensity gives the tissue; the side comes from the intensity difference between
    the voxels two steps along +x and -x (right channels favoured where it is positive),
    and every left channel gets a constant ``bias`` (which breaks the symmetry).
    """
    table = default_label_table()
    side = np.array([{"left": 1.0, "right": -1.0}.get(s.hemisphere, 0.0) for s in table], np.float32)

    def predict(batch: np.ndarray) -> np.ndarray:
        x = batch[0, ..., 0]
        slope = np.roll(x, -2, axis=0) - np.roll(x, 2, axis=0)
        logits = _intensity_logits(x, width, SYMMETRIC_INTENSITIES) + side * (bias - gain * slope[..., None])
        return _softmax(logits)[None]

    return Network(predict=predict, label_table=table, resolution_mm=1.0, size_multiple=8)


def constant_network(value: int) -> Network:
    """A network that calls every voxel of its window, padding included, structure ``value``."""
    table = default_label_table()
    channel = int(table.index_of([value])[0])

    def predict(batch: np.ndarray) -> np.ndarray:
        out = np.zeros(batch.shape[:4] + (len(table),), np.float32)
        out[..., channel] = 1.0
        return out

    return Network(predict=predict, label_table=table, resolution_mm=1.0, size_multiple=8)
