"""The 3D U-Net of SynthSeg, in backend-agnostic Keras 3.

Architecture (as ``ext/neuron/models.py:unet`` called by SynthSeg's ``training.py``):

- encoder: at each level ``l`` (0 = full resolution), ``conv_per_level`` convolutions
  (``conv_size``\\ :sup:`3`, 'same' padding, ``features(l)`` maps, activation), then one
  normalisation layer, then 2x2x2 max-pooling (not after the last level);
- decoder: for each level from ``n_levels - 2`` up to 0, 2x nearest-neighbour upsampling,
  concatenation ``[skip, upsampled]`` where ``skip`` is the encoder's last convolution
  output at that level (taken *before* the normalisation, as in the original),
  ``conv_per_level`` convolutions with ``features(l)`` maps, one normalisation layer;
- a 1x1x1 convolution to ``n_labels`` logits (layer ``likelihood``, no activation, used
  by the weighted-L2 warm-up loss) and a softmax over channels (layer ``prediction``,
  always computed in float32).

Layer names are stable (``enc{level}_conv{i}``, ``enc{level}_norm``, ``dec{level}_conv{i}``,
``dec{level}_norm``, ``likelihood``, ...): model files key their arrays by them.
"""

from __future__ import annotations

from typing import Any

from .settings import DTYPE_POLICIES, NetworkSettings

__all__ = ["LOGITS_LAYER", "OUTPUT_LAYER", "build_unet", "count_parameters", "logits_model"]

#: Name of the layer giving the pre-softmax logits.
LOGITS_LAYER = "likelihood"
#: Name of the softmax output layer.
OUTPUT_LAYER = "prediction"


def build_unet(
    settings: NetworkSettings,
    n_labels: int,
    *,
    name: str = "unet",
    seed: int | None = None,
    dtype_policy: str = "float32",
) -> Any:
    """Build the U-Net as a functional ``keras.Model``.

    Parameters
    ----------
    settings
        Architecture.
    n_labels
        Output channels (segmentation labels, background included).
    name
        Model name.
    seed
        Seed of the weight initialisers and dropout masks (layer ``i`` uses ``seed + i``);
        ``None`` draws from Keras' global generator.
    dtype_policy
        'float32', 'mixed_bfloat16' or 'mixed_float16': the compute dtype of every layer
        but the softmax (variables stay float32 in all cases).

    Returns
    -------
    keras.Model
        Input ``(None, None, None, 1)`` float32 image (batch, x, y, z, 1), each spatial size
        a multiple of ``settings.size_multiple``; output ``(batch, x, y, z, n_labels)``
        float32 posteriors summing to 1 over the last axis.
    """
    import keras
    from keras import layers

    if int(n_labels) < 1:
        raise ValueError(f"n_labels must be >= 1, got {n_labels}")
    if dtype_policy not in DTYPE_POLICIES:
        raise ValueError(f"dtype_policy must be one of {', '.join(DTYPE_POLICIES)}, got {dtype_policy!r}")

    counter = iter(range(1 << 30))

    def next_seed() -> int | None:
        return None if seed is None else int(seed) + next(counter)

    def conv(features: int, size: int, layer_name: str, activation: str | None) -> Any:
        return layers.Conv3D(
            features,
            size,
            padding="same",
            activation=activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=next_seed()),
            name=layer_name,
            dtype=dtype_policy,
        )

    def conv_block(tensor: Any, level: int, prefix: str) -> tuple[Any, Any]:
        """Convolutions of one level; returns (last conv output, normalised output)."""
        for i in range(settings.conv_per_level):
            tensor = conv(settings.features(level), settings.conv_size, f"{prefix}{level}_conv{i}",
                          settings.activation)(tensor)
            if settings.dropout > 0:
                tensor = layers.SpatialDropout3D(
                    settings.dropout, seed=next_seed(), name=f"{prefix}{level}_dropout{i}", dtype=dtype_policy
                )(tensor)
        last_conv = tensor
        if settings.normalisation == "batch":
            tensor = layers.BatchNormalization(name=f"{prefix}{level}_norm", dtype=dtype_policy)(tensor)
        elif settings.normalisation == "instance":
            tensor = layers.GroupNormalization(groups=-1, name=f"{prefix}{level}_norm", dtype=dtype_policy)(tensor)
        return last_conv, tensor

    image = keras.Input(shape=(None, None, None, 1), name="image", dtype="float32")
    tensor = image
    skips = []
    for level in range(settings.n_levels):
        last_conv, tensor = conv_block(tensor, level, "enc")
        if level < settings.n_levels - 1:
            skips.append(last_conv)
            tensor = layers.MaxPooling3D(2, name=f"enc{level}_pool", dtype=dtype_policy)(tensor)
    for level in range(settings.n_levels - 2, -1, -1):
        tensor = layers.UpSampling3D(2, name=f"dec{level}_up", dtype=dtype_policy)(tensor)
        tensor = layers.Concatenate(axis=-1, name=f"dec{level}_concat", dtype=dtype_policy)([skips[level], tensor])
        _, tensor = conv_block(tensor, level, "dec")
    logits = conv(int(n_labels), 1, LOGITS_LAYER, None)(tensor)
    posteriors = layers.Activation("softmax", name=OUTPUT_LAYER, dtype="float32")(logits)
    return keras.Model(image, posteriors, name=name)


def logits_model(unet: Any) -> Any:
    """A model sharing ``unet``'s layers that outputs the pre-softmax logits."""
    import keras

    return keras.Model(unet.input, unet.get_layer(LOGITS_LAYER).output, name=f"{unet.name}_logits")


def count_parameters(model: Any) -> int:
    """Number of scalars in the model's weights (trainable and normalisation statistics)."""
    import numpy as np

    return int(sum(np.prod(w.shape) for w in model.weights))
