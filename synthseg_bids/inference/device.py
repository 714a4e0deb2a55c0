"""Choose the device and CPU threads of the Keras backend (TensorFlow or JAX).

TensorFlow fixes its visible devices and thread pools when it initialises (the first
operation run). :func:`configure_device` must therefore be called before any model is
built or run; :class:`~synthseg_bids.inference.Segmenter` calls it before loading its
model. Calling it again with the same choice is harmless; asking for a different
choice after initialisation raises :class:`DeviceError` (restart the process instead).

On JAX nothing process-wide is changed: :func:`configure_device` only checks the choice
and returns the device, and :meth:`~synthseg_bids.inference.Network.from_keras` places
the network's weights and inputs on that device (jitted code runs where its inputs
are), so each network can use its own device. XLA sizes its CPU thread pool, and JAX
preallocates GPU memory, when JAX starts: limit CPUs from outside the process (e.g.
``taskset``) and share a GPU with ``XLA_PYTHON_CLIENT_PREALLOCATE=false``; a ``threads``
request raises :class:`DeviceError` on JAX rather than being ignored.
"""

from __future__ import annotations

__all__ = ["DeviceError", "configure_device", "visible_gpus"]

_configured: tuple[str, int | None, str] | None = None


class DeviceError(RuntimeError):
    """The requested device cannot be used (no GPU, TensorFlow already initialised, threads on JAX)."""


def visible_gpus() -> list[str]:
    """Names of the GPUs the Keras backend can see (on TensorFlow, without initialising it)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        try:
            return [str(d) for d in jax.devices("gpu")]
        except RuntimeError:  # JAX has no GPU backend (CPU-only jaxlib, or no driver)
            return []
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def configure_device(device: str = "auto", threads: int | None = None) -> str:
    """Make the Keras backend run on ``device`` with ``threads`` CPU threads.

    Parameters
    ----------
    device : {'auto', 'cpu', 'gpu'}
        'cpu' hides every GPU from TensorFlow (on JAX: the network is placed on the
        CPU); 'gpu' requires one; 'auto' uses a GPU when one is visible. On TensorFlow,
        GPUs get on-demand memory allocation (memory growth), so several processes can
        share a card.
    threads : int or None
        TensorFlow's intra-op and inter-op thread pool sizes (``None``: the backend's
        defaults). Must be ``None`` on JAX, whose thread pool is fixed when it starts.

    Returns
    -------
    str
        'gpu' or 'cpu': the device actually used.

    Raises
    ------
    DeviceError
        ``device='gpu'`` with no GPU visible, a Keras backend other than TensorFlow or JAX,
        ``threads`` on JAX, or a different choice than an earlier call once TensorFlow has
        initialised.
    """
    global _configured
    if device not in ("auto", "cpu", "gpu"):
        raise DeviceError(f"unknown device {device!r}; use 'auto', 'cpu' or 'gpu'")
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_device(device, threads)
    if backend != "tensorflow":
        raise DeviceError(f"device selection needs the TensorFlow or JAX Keras backend, not {backend!r}")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise DeviceError("device 'gpu' was requested but TensorFlow sees no GPU (check CUDA drivers, CUDA_VISIBLE_DEVICES)")
    used = "gpu" if gpus and device != "cpu" else "cpu"
    choice = (device, threads, used)
    if _configured is not None:
        if _configured[1:] != choice[1:]:
            raise DeviceError(
                f"TensorFlow is already set up for {_configured[2]} with threads={_configured[1]}; "
                f"cannot switch to {used} with threads={threads} in the same process"
            )
        return used
    try:
        if device == "cpu" and gpus:
            tf.config.set_visible_devices([], "GPU")
        elif used == "gpu":
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
        if threads is not None:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as err:
        raise DeviceError(
            f"cannot set device {device!r} / threads={threads}: TensorFlow is already initialised in this "
            f"process ({err}); choose them before any TensorFlow work"
        ) from None
    _configured = choice
    return used


def _jax_device(device: str, threads: int | None) -> str:
    """:func:`configure_device` on JAX: check the choice, return 'gpu' or 'cpu'."""
    if threads is not None:
        raise DeviceError(
            f"threads={threads} cannot be set on the JAX backend (XLA sizes its CPU thread pool when it "
            "starts); leave threads unset and limit the CPUs from outside the process (e.g. taskset)"
        )
    gpus = visible_gpus()
    if device == "gpu" and not gpus:
        raise DeviceError("device 'gpu' was requested but JAX sees no GPU (check the CUDA jaxlib, CUDA_VISIBLE_DEVICES)")
    return "gpu" if gpus and device != "cpu" else "cpu"
