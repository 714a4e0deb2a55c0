"""The network as the segmenter runs it: a loaded model, compiled for inference on its device.

:class:`Network` wraps a Keras model file (:meth:`Network.from_file`: device, threads and
precision chosen first, :mod:`.device`, :mod:`.precision`), a Keras model
(:meth:`Network.from_keras`), or any callable (tests, other back-ends). Keras models run
compiled (a ``tf.function`` or a ``jax.jit``) and leave their posteriors on the device
(:attr:`Network.forward`); a U-Net of :func:`~synthseg_bids.network.build_unet` on
TensorFlow also runs its full-resolution decoder level in y slabs
(:attr:`Network.slabs`, :mod:`synthseg_bids.network.unet_slabs`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.labels import LabelTable
from ..network.unet_slabs import SlabForward
from .prediction import Backend

__all__ = ["Network", "default_model_path"]

#: Where the package's trained model is installed.
_DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "default_model.npz"


def default_model_path() -> Path:
    """Path of the model shipped with the package (it may be missing in a source checkout)."""
    return _DEFAULT_MODEL


@dataclass
class Network:
    """A segmentation network as the segmenter uses it.

    Attributes
    ----------
    predict : callable
        ``predict(batch)`` maps float32 intensities ``(1, X, Y, Z, 1)`` in [0, 1] to float32
        posteriors ``(1, X, Y, Z, K)`` (channels summing to one), for any X, Y, Z that are
        multiples of ``size_multiple``.
    label_table : LabelTable
        Meaning of the K channels.
    resolution_mm : float
        Voxel size (mm) of the images the network expects.
    size_multiple : int
        Spatial sizes must be multiples of this.
    path : Path or None
        Model file, when loaded from one.
    info : ModelInfo or None
        Model file metadata (:class:`synthseg_bids.network.ModelInfo`).
    device : str
        'cpu' or 'gpu' for Keras models; 'custom' for callables.
    precision : str
        Arithmetic the network runs in: 'float32' or 'bfloat16' (:mod:`.precision`).
    forward : callable or None
        Keras models: ``predict`` without the copy to the host (it returns the backend's
        device tensor), so that the segmenter's compiled steps run on the posteriors where
        they are. ``None`` for callables (their numpy output is moved to the device).
    slabs : callable or None
        A U-Net of :func:`~synthseg_bids.network.build_unet` on TensorFlow: ``slabs(batch)``
        yields ``(start, stop, posteriors)`` for consecutive y ranges of ``forward(batch)``
        (:func:`~synthseg_bids.network.unet_slabs.sliced_forward`), so that a caller can use
        each part as it comes. ``None`` otherwise.
    """

    predict: Callable[[np.ndarray], np.ndarray]
    label_table: LabelTable
    resolution_mm: float = 1.0
    size_multiple: int = 16
    path: Path | None = None
    info: Any = None
    device: str = "custom"
    forward: Callable[[np.ndarray], Any] | None = None
    precision: str = "float32"
    slabs: SlabForward | None = None

    @classmethod
    def from_keras(
        cls, model: Any, info: Any, *, path: Path | None = None, device: str = "cpu", precision: str = "float32"
    ) -> "Network":
        """Wrap a Keras U-Net and its :class:`~synthseg_bids.network.ModelInfo`.

        ``precision`` names the arithmetic ``model`` was built with ('float32', or
        'bfloat16' for Keras' ``mixed_bfloat16`` policy); the posteriors are float32 either way.

        On TensorFlow the model runs in one ``tf.function`` traced once for every input
        shape. On JAX it runs as a ``jax.jit`` of its stateless call (compiled once for
        every input shape), with its current weights and the inputs placed on
        ``device`` ('cpu' or 'gpu'); later changes to the model's weights are not seen.
        """
        backend = Backend(device)
        forward, slabs = _keras_forward(model, backend)
        return cls(lambda batch: backend.host(forward(batch)), info.label_table, float(info.resolution_mm),
                   int(info.network.size_multiple), path=path, info=info, device=device, forward=forward,
                   precision=precision, slabs=slabs)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, *, device: str = "auto", threads: int | None = None, precision: str = "auto"
    ) -> "Network":
        """Load a model file after choosing the Keras backend's device, threads (:mod:`.device`) and precision.

        ``precision`` ('auto', 'float32', 'bfloat16') is resolved on the device used
        (:func:`~synthseg_bids.inference.precision.resolve_precision`).

        Raises
        ------
        synthseg_bids.network.ModelFileError
            Missing or invalid model file (the message names it).
        synthseg_bids.inference.device.DeviceError
            ``device='gpu'`` without a GPU, a device change after TensorFlow started,
            ``threads`` on JAX, or bfloat16 asked of a device without it.
        """
        from ..network import load_model
        from .device import configure_device
        from .precision import keras_policy, resolve_precision

        path = Path(path).resolve()
        used = configure_device(device, threads)
        arithmetic = resolve_precision(precision, used)
        model, info = load_model(path, dtype_policy=keras_policy(arithmetic))
        return cls.from_keras(model, info, path=path, device=used, precision=arithmetic)


def _keras_forward(model: Any, backend: Backend) -> tuple[Callable[[np.ndarray], Any], SlabForward | None]:
    """``model`` compiled for inference: host batch -> float32 posteriors on the device; and the
    same pass in y slabs for a U-Net of :func:`~synthseg_bids.network.build_unet` on TensorFlow
    (else ``None``)."""
    if backend.name == "jax":
        import jax

        trainable = backend.put([v.value for v in model.trainable_variables])
        non_trainable = backend.put([v.value for v in model.non_trainable_variables])

        @jax.jit
        def run_jax(trainable, non_trainable, batch):
            outputs, _ = model.stateless_call(trainable, non_trainable, batch, training=False)
            return outputs.astype("float32")

        return lambda batch: run_jax(trainable, non_trainable, backend.put(np.asarray(batch, np.float32))), None
    if backend.name == "tensorflow":
        import tensorflow as tf

        from ..network.unet_slabs import sliced_forward, unet_stages

        stages = unet_stages(model)
        if stages is not None:
            slabs = sliced_forward(*stages)
            return lambda batch: tf.concat([part for _, _, part in slabs(batch)], axis=2), slabs

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, None, 1], tf.float32)])
        def run_tf(batch):
            return tf.cast(model(batch, training=False), tf.float32)

        return lambda batch: run_tf(tf.constant(batch, dtype=tf.float32)), None
    import keras

    return lambda batch: keras.ops.cast(model(backend.put(np.asarray(batch, np.float32)), training=False),
                                        "float32"), None
