"""U-Net builder: shapes, channels, parameter count by hand, seeding, precision policy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from synthseg_bids.core.settings import SettingsError
from synthseg_bids.network import NetworkSettings, build_unet, count_parameters
from synthseg_bids.network.unet import LOGITS_LAYER, logits_model


def _image(shape, seed=0):
    return np.random.default_rng(seed).random((1, *shape, 1)).astype(np.float32)


@pytest.mark.parametrize(
    "settings, n_labels, shape",
    [
        (NetworkSettings(n_levels=2, base_features=4), 3, (16, 16, 16)),
        (NetworkSettings(n_levels=3, base_features=4, conv_per_level=1), 5, (16, 24, 32)),
        (NetworkSettings(n_levels=3, base_features=4, normalisation="instance", activation="relu"), 2, (8, 12, 20)),
        (NetworkSettings(n_levels=1, base_features=3, normalisation="none", dropout=0.2), 4, (5, 7, 9)),
    ],
)
def test_output_shape_and_softmax(settings, n_labels, shape):
    model = build_unet(settings, n_labels, seed=0)
    out = np.asarray(model(_image(shape), training=False))
    assert out.shape == (1, *shape, n_labels)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    assert np.all(out >= 0)


def test_same_model_accepts_several_sizes():
    model = build_unet(NetworkSettings(n_levels=3, base_features=4), 3, seed=0)
    for shape in [(8, 8, 8), (16, 8, 24), (32, 32, 16)]:
        assert tuple(model(_image(shape)).shape) == (1, *shape, 3)


def _conv(c_in, c_out, k):
    return c_in * c_out * k**3 + c_out


def test_parameter_count_matches_hand_computation():
    # 3 levels, 2 convs, 4 features x2: encoder 4, 8, 16; decoder 8 (in 8+16), 4 (in 4+8); BN 4 arrays/level.
    settings = NetworkSettings(n_levels=3, conv_per_level=2, base_features=4, feature_multiplier=2)
    model = build_unet(settings, 5, seed=0)
    expected = (
        _conv(1, 4, 3) + _conv(4, 4, 3) + 4 * 4
        + _conv(4, 8, 3) + _conv(8, 8, 3) + 4 * 8
        + _conv(8, 16, 3) + _conv(16, 16, 3) + 4 * 16
        + _conv(8 + 16, 8, 3) + _conv(8, 8, 3) + 4 * 8
        + _conv(4 + 8, 4, 3) + _conv(4, 4, 3) + 4 * 4
        + _conv(4, 5, 1)
    )
    assert count_parameters(model) == expected


def test_original_architecture_size():
    model = build_unet(NetworkSettings(), 33, seed=0)
    # 24-384 features over 5 levels; hand count as above (13.24 M scalars).
    feats = [24, 48, 96, 192, 384]
    enc = sum(_conv(cin, f, 3) + _conv(f, f, 3) + 4 * f for cin, f in zip([1] + feats[:-1], feats))
    dec = sum(_conv(feats[lv] + feats[lv + 1], feats[lv], 3) + _conv(feats[lv], feats[lv], 3) + 4 * feats[lv]
              for lv in range(4))
    assert count_parameters(model) == enc + dec + _conv(24, 33, 1)


def test_seed_makes_weights_reproducible():
    settings = NetworkSettings(n_levels=2, base_features=4)
    a, b, c = (build_unet(settings, 3, seed=s) for s in (7, 7, 8))
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))
    assert not np.array_equal(np.asarray(a.weights[0]), np.asarray(c.weights[0]))
    # different layers get different seeds
    assert not np.array_equal(np.asarray(a.get_layer("enc0_conv1").kernel)[:, :, :, :1],
                              np.asarray(a.get_layer("enc0_conv0").kernel))


def test_logits_model_shares_weights_and_softmax_matches():
    model = build_unet(NetworkSettings(n_levels=2, base_features=4), 3, seed=1)
    logits = np.asarray(logits_model(model)(_image((8, 8, 8))))
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(model(_image((8, 8, 8)))), expected, rtol=1e-5, atol=1e-6)
    assert model.get_layer(LOGITS_LAYER).activation.__name__ == "linear"


def test_mixed_precision_policy_keeps_float32_output():
    model = build_unet(NetworkSettings(n_levels=2, base_features=4), 3, seed=0, dtype_policy="mixed_bfloat16")
    assert model.get_layer("enc0_conv0").compute_dtype == "bfloat16"
    assert model.get_layer("enc0_conv0").kernel.dtype == "float32"
    out = model(_image((8, 8, 8)))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_allclose(np.asarray(out).sum(-1), 1.0, atol=1e-5)


def test_skip_connection_bypasses_normalisation():
    # As in SynthSeg's neuron unet, the decoder concatenates the encoder's last conv output (pre-norm).
    model = build_unet(NetworkSettings(n_levels=2, base_features=4), 3, seed=0)
    concat = model.get_layer("dec0_concat")
    sources = [tensor._keras_history.operation.name for tensor in concat.input]
    assert sources == ["enc0_conv1", "dec0_up"]


@pytest.mark.parametrize(
    "changes, word",
    [
        ({"n_levels": 0}, "n_levels"),
        ({"conv_size": 2}, "conv_size"),
        ({"activation": "tanhh"}, "activation"),
        ({"normalisation": "layer"}, "normalisation"),
        ({"dropout": 1.0}, "dropout"),
        ({"base_features": 0}, "base_features"),
    ],
)
def test_invalid_settings_are_rejected(changes, word):
    with pytest.raises(SettingsError, match=word):
        NetworkSettings(**changes)


def test_settings_round_trip_and_features():
    settings = NetworkSettings(feature_multiplier=1.5, base_features=10)
    assert NetworkSettings.from_json(settings.to_json()) == settings
    assert [settings.features(level) for level in range(3)] == [10, 15, 22]  # round(22.5) -> 22 (banker's)
    assert NetworkSettings().size_multiple == 16


def test_bad_build_arguments():
    with pytest.raises(ValueError, match="n_labels"):
        build_unet(NetworkSettings(n_levels=1), 0)
    with pytest.raises(ValueError, match="dtype_policy"):
        build_unet(NetworkSettings(n_levels=1), 2, dtype_policy="float64")
