"""The U-Net of :func:`~.unet.build_unet` with its full-resolution decoder level run in y slabs.

The cut is made at the layers :func:`~.unet.build_unet` names ``dec0_up`` and ``dec0_concat``:
:func:`unet_stages` splits such a model into a trunk (everything up to the level-1 decoder
output, and the level-0 skip features) and the chain of layers of the last level, and
:func:`sliced_forward` runs the trunk whole and the last level slab by slab along y, with a
halo, so that the output is the whole pass's without its full-size temporaries (the
48-channel concatenation) ever existing at once. TensorFlow only; other models and
backends run whole.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["HEAD_SLAB", "SlabForward", "sliced_forward", "unet_stages"]

#: ``slabs(batch)`` yields ``(start, stop, posteriors)`` for consecutive y ranges of the output.
SlabForward = Callable[[np.ndarray], Iterator[tuple[int, int, Any]]]

#: Thickness (voxels along y) of the slabs in which the U-Net's last level runs (see :func:`unet_stages`).
HEAD_SLAB = 32
#: Layers the last level may hold: each maps a voxel's output from a neighbourhood of its input.
HEAD_LAYERS = ("Conv3D", "BatchNormalization", "Activation", "SpatialDropout3D", "Dropout")


def unet_stages(model: Any) -> tuple[Any, Any, list, int] | None:
    """A U-Net of :func:`~synthseg_bids.network.build_unet` cut before its full-resolution decoder.

    Returns ``(trunk, up-sampling and concatenation layers, last-level layers, halo)``:
    ``trunk`` maps the image to the level-0 skip features and the level-1 decoder output;
    the last level (up-sampling, concatenation, convolutions, normalisation, logits,
    softmax) is a chain of layers whose output at a voxel depends on the inputs within
    ``halo`` voxels (even, for the 2x up-sampling), so that it can run in slabs with the
    same result as on the whole window, without its full-size temporaries (the 48-channel
    concatenation) ever existing at once. ``None`` for any other model (run whole).
    """
    import keras

    names = [layer.name for layer in model.layers]
    if "dec0_up" not in names or "dec0_concat" not in names or len(model.outputs) != 1:
        return None
    up, concat = model.get_layer("dec0_up"), model.get_layer("dec0_concat")
    skip_low = concat.input
    if not isinstance(skip_low, (list, tuple)) or len(skip_low) != 2 or skip_low[1] is not up.output:
        return None
    head = model.layers[names.index("dec0_concat") + 1:]
    previous, halo = concat.output, 0
    for layer in head:
        if type(layer).__name__ not in HEAD_LAYERS or layer.input is not previous:
            return None
        if type(layer).__name__ == "Conv3D":
            if layer.padding != "same" or tuple(layer.strides) != (1, 1, 1) or tuple(layer.dilation_rate) != (1, 1, 1):
                return None
            halo += (int(layer.kernel_size[1]) - 1) // 2
        previous = layer.output
    if previous is not model.outputs[0] or tuple(up.size) != (2, 2, 2):
        return None
    trunk = keras.Model(model.inputs, [skip_low[0], up.input], name=f"{model.name}_trunk")
    return trunk, (up, concat), head, halo + halo % 2


def sliced_forward(
    trunk: Any, joins: tuple[Any, Any], head: list, halo: int
) -> SlabForward:
    """TensorFlow forward pass of a U-Net cut by :func:`unet_stages`: trunk whole, last level in y slabs.

    The returned function yields ``(start, stop, posteriors)`` for consecutive y ranges
    (``posteriors``: ``(1, X, stop - start, Z, K)`` float32 tensor).

    Each slab of ``HEAD_SLAB`` output planes runs on its input planes plus ``halo`` on each
    side (fewer at the window's edges, where the zero padding is the whole window's), so
    every output voxel sees the inputs it sees on the whole window.
    """
    import tensorflow as tf

    up, concat = joins
    skip_spec, low_spec = (tf.TensorSpec([1, None, None, None, int(t.shape[-1])], t.dtype) for t in trunk.outputs)

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, None, 1], tf.float32)])
    def run_trunk(batch):
        return tuple(trunk(batch, training=False))

    @tf.function(input_signature=[skip_spec, low_spec])
    def run_head(skip, low):
        tensor = concat([skip, up(low)])
        for layer in head:
            tensor = layer(tensor, training=False)
        return tf.cast(tensor, tf.float32)

    def slabs(batch: np.ndarray) -> Iterator[tuple[int, int, Any]]:
        skip, low = run_trunk(tf.constant(batch, dtype=tf.float32))
        length = int(skip.shape[2])
        for start in range(0, length, HEAD_SLAB):
            stop = min(start + HEAD_SLAB, length)
            lo, hi = max(0, start - halo), min(length, stop + halo)
            out = run_head(skip[:, :, lo:hi], low[:, :, lo // 2 : hi // 2])
            yield start, stop, out[:, :, start - lo : stop - lo]
            del out

    return slabs

