"""SynthSeg's networks built in Keras 3 with neurite's layer names (keras is imported on first use)."""

from __future__ import annotations

from typing import Any

from ..keras2_h5 import H5Weights
from .architecture import OfficialArchitecture, StageArchitecture, expand_needed

__all__ = ["assign_weights", "build_official_model"]


def _custom_layers():
    """Small Keras 3 layers of the cascades (defined lazily: keras is imported on first use)."""
    global _CUSTOM
    if _CUSTOM is None:
        import keras
        from keras import ops

        class ArgmaxOneHot(keras.layers.Layer):
            """argmax over channels, then one-hot with ``depth`` channels (float32)."""

            def __init__(self, depth: int, **kwargs):
                super().__init__(**kwargs)
                self.depth = int(depth)

            def call(self, x):
                return ops.one_hot(ops.argmax(x, axis=-1), self.depth, dtype="float32")

            def compute_output_shape(self, input_shape):
                return (*input_shape[:-1], self.depth)

        class MaskOneHot(keras.layers.Layer):
            """A (..., 1) binary mask -> two channels [not mask, mask] (float32)."""

            def call(self, x):
                return ops.one_hot(ops.cast(x[..., 0] > 0.5, "int32"), 2, dtype="float32")

            def compute_output_shape(self, input_shape):
                return (*input_shape[:-1], 2)

        class SpatialMean(keras.layers.Layer):
            """Mean over the three spatial axes: (B, X, Y, Z, C) -> (B, C)."""

            def call(self, x):
                return ops.mean(x, axis=(1, 2, 3))

            def compute_output_shape(self, input_shape):
                return (input_shape[0], input_shape[-1])

        class QCScores(keras.layers.Layer):
            """Channels 1.. of the QC regression, clipped to [0, 1] (as mri_synthseg reports them)."""

            def call(self, x):
                return ops.clip(x[:, 1:], 0.0, 1.0)

            def compute_output_shape(self, input_shape):
                return (input_shape[0], input_shape[1] - 1)

        _CUSTOM = {"ArgmaxOneHot": ArgmaxOneHot, "MaskOneHot": MaskOneHot, "SpatialMean": SpatialMean,
                   "QCScores": QCScores}
    return _CUSTOM


_CUSTOM: dict[str, Any] | None = None


def _unet(tensor: Any, stage: StageArchitecture) -> Any:
    """neurite's U-Net on ``tensor``; returns the softmax posteriors (layer ``<prefix>_prediction``)."""
    from keras import layers

    p, n = stage.prefix, stage.n_levels
    skips = {}
    for level, features in enumerate(stage.level_features):
        for c in range(stage.conv_per_level):
            tensor = layers.Conv3D(features, stage.kernel_size, padding="same", activation=stage.activation,
                                   name=f"{p}_conv_downarm_{level}_{c}")(tensor)
        skips[level] = tensor
        if stage.batch_norm:
            tensor = layers.BatchNormalization(axis=-1, name=f"{p}_bn_down_{level}")(tensor)
        if level < n - 1:
            tensor = layers.MaxPooling3D(2, padding="same", name=f"{p}_maxpool_{level}")(tensor)
    for j, features in enumerate(stage.decoder_features):
        tensor = layers.UpSampling3D(2, name=f"{p}_up_{n + j}")(tensor)
        if stage.skip_connections[j]:
            tensor = layers.Concatenate(axis=-1, name=f"{p}_merge_{n + j}")([skips[n - 2 - j], tensor])
        for c in range(stage.conv_per_level):
            tensor = layers.Conv3D(features, stage.kernel_size, padding="same", activation=stage.activation,
                                   name=f"{p}_conv_uparm_{n + j}_{c}")(tensor)
        if stage.batch_norm:
            tensor = layers.BatchNormalization(axis=-1, name=f"{p}_bn_up_{j}")(tensor)
    logits = layers.Conv3D(stage.n_outputs, 1, name=f"{p}_likelihood")(tensor)
    return layers.Activation("softmax", name=f"{p}_prediction", dtype="float32")(logits)


def _qc_regressor(tensor: Any, stage: StageArchitecture) -> Any:
    """The QC network on one-hot groups; returns the raw (B, n_outputs) regression ``qc_final_pred``."""
    from keras import layers

    p, k, act = stage.prefix, stage.kernel_size, stage.activation
    for level, features in enumerate(stage.level_features):
        level_input = tensor
        for c in range(stage.conv_per_level):
            last = c == stage.conv_per_level - 1
            tensor = layers.Conv3D(features, k, padding="same", activation=None if last else act,
                                   name=f"{p}_conv_downarm_{level}_{c}")(tensor)
        shortcut = level_input
        if expand_needed(level_input.shape[-1], features):
            shortcut = layers.Conv3D(features, k, padding="same", activation=act,
                                     name=f"{p}_expand_down_merge_{level}")(level_input)
        tensor = layers.Add(name=f"{p}_res_down_merge_{level}")([shortcut, tensor])
        tensor = layers.Activation(act, name=f"{p}_res_down_merge_act_{level}")(tensor)
        if stage.batch_norm:
            tensor = layers.BatchNormalization(axis=-1, name=f"{p}_bn_down_{level}")(tensor)
        if level < stage.n_levels - 1:
            tensor = layers.MaxPooling3D(2, padding="same", name=f"{p}_maxpool_{level}")(tensor)
    tensor = layers.MaxPooling3D(2, padding="same", name=f"{p}_maxpool_{stage.n_levels - 1}")(tensor)
    tensor = layers.Conv3D(stage.n_outputs, k, padding="same", activation=act, name=f"{p}_final_conv_0")(tensor)
    tensor = layers.Conv3D(stage.n_outputs, k, padding="same", activation=act, name=f"{p}_final_conv_1")(tensor)
    return _custom_layers()["SpatialMean"](name=f"{p}_final_pred")(tensor)


def build_official_model(architecture: OfficialArchitecture) -> Any:
    """Build the Keras 3 network of ``architecture`` (weights as initialised by Keras).

    Returns
    -------
    keras.Model
        - segmentation: input ``image`` (B, X, Y, Z, 1) -> posteriors (B, X, Y, Z, K), softmax;
        - robust: the same; the stages' posteriors are the outputs of layers ``unet_prediction``,
          ``l2l_prediction`` and ``unet2_prediction`` (the model's output);
        - parcellation: inputs ``[image (B, X, Y, Z, 1), cortex (B, X, Y, Z, 1)]`` (cortex: 1 in
          voxels labelled 3 or 42, else 0) -> parcel posteriors (B, X, Y, Z, 69);
        - qc: input ``groups`` (B, X, Y, Z, 9), one-hot QC groups -> (B, 8) scores clipped to
          [0, 1]; the raw regression (B, 9) is the output of layer ``qc_final_pred``.
        Spatial sizes must be multiples of :attr:`OfficialArchitecture.size_multiple`.
    """
    import keras
    from keras import layers

    custom = _custom_layers()
    kind, stages = architecture.kind, architecture.stages
    name = f"synthseg_{kind}_{architecture.version}"
    if kind == "segmentation":
        image = keras.Input((None, None, None, 1), name="image", dtype="float32")
        return keras.Model(image, _unet(image, stages[0]), name=name)
    if kind == "robust":
        first, denoiser, second = stages
        image = keras.Input((None, None, None, 1), name="image", dtype="float32")
        tensor = _unet(image, first)
        tensor = custom["ArgmaxOneHot"](first.n_outputs, name="unet_to_l2l")(tensor)
        tensor = _unet(tensor, denoiser)
        tensor = custom["ArgmaxOneHot"](denoiser.n_outputs, name="l2l_to_unet2")(tensor)
        tensor = layers.Concatenate(axis=-1, name="unet2_image_and_labels")([image, tensor])
        return keras.Model(image, _unet(tensor, second), name=name)
    if kind == "parcellation":
        image = keras.Input((None, None, None, 1), name="image", dtype="float32")
        cortex = keras.Input((None, None, None, 1), name="cortex", dtype="float32")
        mask = custom["MaskOneHot"](name="cortex_one_hot")(cortex)
        tensor = layers.Concatenate(axis=-1, name="unet_parc_image_and_cortex")([image, mask])
        return keras.Model([image, cortex], _unet(tensor, stages[0]), name=name)
    if kind == "qc":
        groups = keras.Input((None, None, None, stages[0].input_channels), name="groups", dtype="float32")
        raw = _qc_regressor(groups, stages[0])
        return keras.Model(groups, custom["QCScores"](name="qc_scores")(raw), name=name)
    raise ValueError(f"unknown kind {kind!r}")


def assign_weights(model: Any, weights: H5Weights) -> None:
    """Set the weights of every weighted layer of ``model`` from the stored layer of the same name."""
    for layer in model.layers:
        if not layer.weights:
            continue
        stored = weights.layers[layer.name]  # presence and shapes checked by infer_architecture
        layer.set_weights([stored[variable.name] for variable in layer.weights])
