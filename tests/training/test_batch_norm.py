"""Recomputed batch-normalisation statistics, checked against numpy on the layers' inputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import make_toy_label_map, toy_affine

from synthseg_bids.core.io import save_image
from synthseg_bids.core.settings import SettingsError
from synthseg_bids.generator import GeneratorSettings
from synthseg_bids.network import NetworkSettings, build_unet, load_model
from synthseg_bids.training import TrainingSettings, train_synthetic
from synthseg_bids.training.batch_norm import batch_norm_layers, recalibrate_batch_norm
from synthseg_bids.training.loop import run_training

NETWORK = NetworkSettings(n_levels=2, base_features=4)


def _images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # Different scales and offsets per image, so that the mean of the per-image statistics
    # differs from the statistics of the images pooled together.
    return [(rng.normal(size=(1, 8, 8, 8, 1)) * (k + 1) + k).astype(np.float32) for k in range(n)]


def test_statistics_are_the_mean_of_per_image_statistics():
    unet = build_unet(NETWORK, 3, seed=0)
    layers = batch_norm_layers(unet)
    assert len(layers) == 3  # one a level (after the convolutions) and one in the decoder
    images = _images(3, seed=1)
    # Reference: each layer's input in training mode (earlier layers normalise with batch
    # statistics, so these inputs do not depend on any moving statistics), reduced in numpy.
    probes = keras.Model(unet.input, [layer.input for layer in layers])
    inputs = [[np.asarray(x, np.float64) for x in probes(image, training=True)] for image in images]
    axes = (0, 1, 2, 3)
    want_mean = [np.mean([x[i].mean(axis=axes) for x in inputs], axis=0) for i in range(len(layers))]
    want_var = [np.mean([x[i].var(axis=axes) for x in inputs], axis=0) for i in range(len(layers))]
    momenta = [layer.momentum for layer in layers]

    assert recalibrate_batch_norm(unet, iter(images)) == 3

    for i, layer in enumerate(layers):
        np.testing.assert_allclose(np.asarray(layer.moving_mean), want_mean[i], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.asarray(layer.moving_variance), want_var[i], rtol=1e-3, atol=1e-6)
    assert [layer.momentum for layer in layers] == momenta


def test_weights_other_than_the_statistics_are_unchanged():
    unet = build_unet(NETWORK, 3, seed=0)
    statistics = {id(v) for layer in batch_norm_layers(unet) for v in (layer.moving_mean, layer.moving_variance)}
    before = [np.asarray(v).copy() for v in unet.weights if id(v) not in statistics]
    recalibrate_batch_norm(unet, _images(2, seed=2))
    after = [np.asarray(v) for v in unet.weights if id(v) not in statistics]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_nothing_to_recalibrate_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        recalibrate_batch_norm(build_unet(NETWORK, 3, seed=0), [])
    plain = build_unet(NetworkSettings(n_levels=2, base_features=4, normalisation="none"), 3, seed=0)
    with pytest.raises(ValueError, match="no batch-normalisation layer"):
        recalibrate_batch_norm(plain, _images(1, seed=0))


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 0), (16.5, 16, 16)])
def test_bad_shapes_are_refused(shape):
    with pytest.raises(SettingsError, match="batch_norm_shape"):
        TrainingSettings(batch_norm_images=2, batch_norm_shape=shape)


def test_synthetic_training_records_the_recomputed_statistics(tmp_path):
    maps = [save_image(make_toy_label_map((24, 24, 24), seed=i), toy_affine(), tmp_path / f"map{i}.nii.gz")
            for i in range(2)]
    settings = TrainingSettings(epochs=1, wl2_epochs=0, steps_per_epoch=1, seed=3, batch_norm_images=2,
                                batch_norm_shape=(24, 24, 24))
    path = train_synthetic(maps, tmp_path / "run", GeneratorSettings(output_shape=(16, 16, 16)), NETWORK, settings)
    model, info = load_model(path)
    assert info.provenance["batch_norm_statistics"] == {"images": 2, "shape": [24, 24, 24]}
    # The checkpoint of the last epoch keeps the running averages; the model has others.
    checkpoint = load_model(tmp_path / "run" / "checkpoints" / "epoch_0001.npz")[0]
    name = batch_norm_layers(model)[0].name
    assert not np.allclose(np.asarray(model.get_layer(name).moving_mean),
                           np.asarray(checkpoint.get_layer(name).moving_mean))


def test_training_without_images_refuses_the_setting(tmp_path):
    unet = build_unet(NETWORK, 3, seed=0)
    with pytest.raises(SettingsError, match="synthetic training only"):
        run_training(None, unet, None, model_dir=tmp_path, settings=TrainingSettings(batch_norm_images=1),
                     info=None, resume=False, initial_model=None)
