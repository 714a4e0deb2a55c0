"""Population statistics of batch normalisation, recomputed after training ("precise BN").

During training, each batch-normalisation layer keeps running averages of its batch
statistics (Keras: ``moving = momentum * moving + (1 - momentum) * batch``). At inference
those averages replace the statistics of the scan. Two things make them a poor estimate
after a short or changed training:

- they mix statistics of networks from the last few hundred steps, not of the final one;
- they describe the training crops: with batch size 1 each statistic is that of one crop,
  and a smaller crop than the inference window (e.g. 128^3 against a whole head) holds
  less background, so its statistics differ.

:func:`recalibrate_batch_norm` recomputes them with the weights fixed, as the plain mean
over a set of images of each image's statistics (Wu & Johnson, "Rethinking 'Batch' in
BatchNorm", 2021, section 3). The images can be larger than the training crops.
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["batch_norm_layers", "recalibrate_batch_norm"]


def batch_norm_layers(model: Any) -> list[Any]:
    """The model's ``keras.layers.BatchNormalization`` layers, in graph order."""
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_batch_norm(model: Any, images: Iterable[Any]) -> int:
    """Set every batch-normalisation layer's moving statistics to the images' mean statistics.

    For each image the model runs in training mode (batch statistics), with each layer's
    momentum set to ``k / (k + 1)`` for the ``k``-th image (0-based), so that after ``n``
    images ``moving_mean`` is the mean over the images of the per-image channel means of
    the layer's input, and ``moving_variance`` that of the per-image variances. No weight
    changes. The layers' momenta are restored afterwards.

    Parameters
    ----------
    model
        A Keras model (run eagerly, so that each call reads the momentum set here).
    images
        Network inputs, each a batch ``(B, X, Y, Z, C)``; with ``B > 1`` a batch counts as
        one image, its statistics taken over the batch as in training.

    Returns
    -------
    int
        The number of images used.

    Raises
    ------
    ValueError
        The model has no batch normalisation, or ``images`` is empty.
    """
    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError(f"model {model.name!r} has no batch-normalisation layer to recalibrate")
    momenta = [layer.momentum for layer in layers]
    n = 0
    try:
        for n, image in enumerate(images, start=1):
            for layer in layers:
                layer.momentum = (n - 1) / n
            model(image, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if n == 0:
        raise ValueError("no images to recalibrate batch normalisation with")
    return n
