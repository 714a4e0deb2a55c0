"""The memory-saving paths of prediction against whole-volume references.

- the U-Net's last level run in y slabs (:func:`synthseg_bids.network.unet_slabs.sliced_forward`)
  against the Keras model on the whole input;
- flip averaging and smoothing of a flipped pass given in y slabs
  (:meth:`DevicePosteriors.combine`) against numpy flipping and ``scipy.ndimage.gaussian_filter``;
- the clean-up masks and :meth:`DevicePosteriors.finish` on thin, uneven y slabs against one slab.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("keras")
import keras  # noqa: E402

from synthseg_bids.core.labels import default_label_table  # noqa: E402
from synthseg_bids.inference.prediction import Backend, DevicePosteriors  # noqa: E402

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the sliced forward is TensorFlow's")


def test_unet_last_level_in_slabs_equals_the_whole_model():
    from synthseg_bids.network import NetworkSettings, build_unet
    from synthseg_bids.network.unet_slabs import HEAD_SLAB, sliced_forward, unet_stages

    model = build_unet(NetworkSettings(n_levels=3, base_features=4, conv_per_level=2), 5, seed=0)
    stages = unet_stages(model)
    assert stages is not None and stages[3] == 2  # two 3x3x3 convolutions: 2 planes each side
    x = np.random.default_rng(0).random((1, 12, 2 * HEAD_SLAB + 16, 8, 1), dtype=np.float32)
    parts = list(sliced_forward(*stages)(x))
    assert [(a, b) for a, b, _ in parts] == [(0, 32), (32, 64), (64, 80)]
    sliced = np.concatenate([np.asarray(p) for _, _, p in parts], axis=2)
    whole = np.asarray(model(x, training=False))
    np.testing.assert_allclose(sliced, whole, atol=2e-6)


def test_other_models_are_not_cut():
    from synthseg_bids.network.unet_slabs import unet_stages

    inputs = keras.Input((None, None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv3D(3, 3, padding="same", activation="softmax")(inputs))
    assert unet_stages(model) is None


@pytest.mark.parametrize("sizes", [[40], [3, 10, 2, 20, 5], [16, 16, 8]], ids=["whole", "thin", "even"])
def test_flipped_pass_in_slabs_equals_scipy(sizes):
    table = default_label_table()
    k = len(table)
    rng = np.random.default_rng(1)
    shape = (1, 6, sum(sizes), 7, k)
    first = rng.random(shape, dtype=np.float32)
    flipped = rng.random(shape, dtype=np.float32)
    sigma = 1.0  # radius 4: thicker than some slabs
    device = DevicePosteriors(table, flip=True, smoothing_sigma=sigma, postprocess="none", threshold=0.25,
                              backend=Backend("cpu"))
    bounds = np.cumsum([0] + sizes)
    slabs = iter([(int(a), int(b), flipped[:, :, a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
    combined = device.combine(first, slabs)

    mirrored = flipped[0, ::-1][..., table.flip_permutation]
    expected = ndimage.gaussian_filter((first[0] + mirrored) * np.float32(0.5), (sigma, sigma, sigma, 0),
                                       mode="nearest", truncate=4.0)
    got = np.moveaxis(np.concatenate([np.asarray(slab) for slab in combined.posteriors], axis=2), 0, -1)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    joint = np.zeros((k, k), np.int64)
    np.add.at(joint, (first[0].argmax(-1).ravel(), mirrored.argmax(-1).ravel()), 1)
    np.testing.assert_array_equal(combined.flip_joint, joint)


def test_masks_and_finish_in_slabs_equal_one_slab():
    """The clean-up masks and the final step run per y slab: the same as on the joined window.

    One slab is the path the MNI152 parity test checks against the old host pipeline
    (``test_prediction_parity.py``); here thin, uneven slabs must give exactly its labels,
    counts and masks, and its sums and posteriors to float rounding.
    """
    from synthseg_bids.core.postprocess import largest_components

    table = default_label_table()
    k = len(table)
    rng = np.random.default_rng(3)
    shape = (1, 9, 30, 8, k)
    logits = rng.normal(size=shape).astype(np.float32) * 3
    logits[..., 0] += 8.0  # background, except in a blob that only the later (thin) slabs reach
    logits[0, 4:8, 18:28, 2:6, 0] -= 16.0
    first = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    flipped = np.roll(first, 1, axis=1)
    inside = (slice(1, 8), slice(2, 27), slice(0, 7))
    results = []
    for sizes in ([30], [3, 10, 2, 12, 3]):
        device = DevicePosteriors(table, flip=True, smoothing_sigma=0.5, postprocess="full", threshold=0.02,
                                  backend=Backend("cpu"))
        bounds = np.cumsum([0] + sizes)
        combined = device.combine(first, iter([(int(a), int(b), flipped[:, :, a:b])
                                               for a, b in zip(bounds[:-1], bounds[1:])]))
        masks = combined.masks.copy()
        kept = largest_components(combined.masks, profiles=combined.profiles)
        results.append((masks, device.finish(combined, kept, inside, with_posteriors=True)))
        assert combined.posteriors == []  # every slab let go
    (masks_one, one), (masks_many, many) = results
    assert masks_one.any() and not masks_one.all()  # the clean-up has something to do
    np.testing.assert_array_equal(masks_many, masks_one)
    np.testing.assert_array_equal(many.labels, one.labels)
    np.testing.assert_array_equal(many.label_counts, one.label_counts)
    np.testing.assert_allclose(many.sums, one.sums, rtol=1e-5)
    np.testing.assert_allclose(many.label_confidence, one.label_confidence, rtol=1e-5)
    np.testing.assert_allclose(many.posteriors, one.posteriors, atol=1e-6)
