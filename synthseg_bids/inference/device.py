"""Choose the device and CPU threads of the Keras backend (TensorFlow or JAX).

TensorFlow fixes its visible devices and thread pools when it initialises (the first
operation run). :func:`configure_device` must therefore be called before any model is
built or run; :class:`~synthseg_bids.inference.Segmenter` calls it before loading its
model. Calling it again with the same choice is harmless; asking for a different
choice after initialisation raises :class:`DeviceError` (restart the process instead).

On JAX nothing process-wide is changed: :func:`configure_device` only checks the choice
and returns the device, and :meth:`~synthseg_bids.inference.Network.from_keras` places
the network's weights and inputs on that device (jitted code runs where its inputs
are), so each network can use its own device. XLA sizes its CPU thread pool when JAX
starts: limit CPUs from outside the process (e.g. ``taskset``); a ``threads`` request
raises :class:`DeviceError` on JAX rather than being ignored.

Shared GPUs: on TensorFlow every GPU gets memory growth (allocation on demand) before
the first model is loaded; on JAX, ``import synthseg_bids`` sets
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` unless it is already set, so JAX does not
reserve 75 % of the card when it starts.

The choice is logged once per process at INFO level (``synthseg_bids.inference``), e.g.
``device: GPU (NVIDIA H200) on tensorflow 2.21.0, memory growth on`` or ``device: CPU on
tensorflow 2.21.0 (no GPU found)``; only where an NVIDIA driver is present but the GPU
cannot be used does the INFO line say why (with what to install), otherwise the
reasons are logged at DEBUG (``-v``). When ``device='gpu'`` finds no GPU, the one-line
:class:`DeviceError` says why: no NVIDIA driver in this process, no CUDA libraries for
the backend, or driver and libraries present but no device visible.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.metadata
import logging
import os
import shutil

__all__ = ["DeviceError", "configure_device", "no_gpu_reason", "visible_gpus"]

LOGGER = logging.getLogger("synthseg_bids.inference")

_configured: tuple[str, int | None, str] | None = None
#: (backend, device used) pairs already logged by this process.
_announced: set[tuple[str, str]] = set()

#: pip distributions that bring the CUDA libraries each backend needs (the ``gpu`` / ``gpu-jax`` extras).
_CUDA_WHEELS = {
    "tensorflow": ("nvidia-cudnn-cu12", "nvidia-cublas-cu12"),
    "jax": ("jax-cuda12-plugin", "jax-cuda13-plugin"),
}
_EXTRA = {"tensorflow": "gpu", "jax": "gpu-jax"}


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


# -- probes (plain functions, so that tests can simulate each cause without a GPU) -------------
def _driver_missing() -> list[str]:
    """What of the NVIDIA driver this process lacks: [] when libcuda loads and /dev/nvidia<N> exists."""
    missing = []
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        missing.append("libcuda.so.1 cannot be loaded")
    if not glob.glob("/dev/nvidia[0-9]*"):
        missing.append("no /dev/nvidia<N> device file")
    if missing and shutil.which("nvidia-smi") is None:
        missing.append("no nvidia-smi on PATH")
    return missing


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _loadable(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def _tensorflow_build() -> dict:
    """TensorFlow's build info: ``is_cuda_build``, ``cuda_version``, ``cudnn_version``."""
    import tensorflow as tf

    return dict(tf.sysconfig.get_build_info())


def _cuda_libraries_missing(backend: str) -> str:
    """'' when the backend has its CUDA libraries, else what is missing (one clause)."""
    extra = f"pip install 'synthseg-bids[{_EXTRA[backend]}]'"
    if backend == "jax":
        if not any(_installed(d) for d in _CUDA_WHEELS["jax"]):
            return f"no CUDA libraries: jaxlib has no CUDA plugin (jax-cuda12-plugin); {extra}"
        return ""
    build = _tensorflow_build()
    if not build.get("is_cuda_build"):
        return f"no CUDA libraries: this TensorFlow is built without CUDA (a CPU-only build); {extra}"
    if all(_installed(d) for d in _CUDA_WHEELS["tensorflow"]):
        return ""
    cudnn = str(build.get("cudnn_version", "9")).split(".")[0]
    cuda = str(build.get("cuda_version", "12")).split(".")[0]
    if _loadable(f"libcudnn.so.{cudnn}") and _loadable(f"libcublas.so.{cuda}"):
        return ""  # a system CUDA on the library path
    return (f"no CUDA libraries: TensorFlow needs CUDA {build.get('cuda_version')} and cuDNN {cudnn} "
            f"(neither the nvidia-* wheels nor libcudnn.so.{cudnn} / libcublas.so.{cuda} found); {extra}")


def no_gpu_reason(backend: str) -> str:
    """Why ``backend`` ('tensorflow' or 'jax') sees no GPU, as one clause: driver, libraries or device."""
    causes = []
    driver = _driver_missing()
    if driver:
        causes.append(f"no NVIDIA driver ({', '.join(driver)}; on a GPU node use docker run --gpus all "
                      "or apptainer run --nv)")
    libraries = _cuda_libraries_missing(backend)
    if libraries:
        causes.append(libraries)
    if causes:
        return "; ".join(causes)
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f"CUDA_VISIBLE_DEVICES={hidden!r}" if hidden is not None else "check nvidia-smi"
    return f"no device: the NVIDIA driver and CUDA libraries are present but {backend} lists no GPU ({where})"


def _gpu_description(backend: str, gpus: list[str]) -> str:
    if backend == "tensorflow":
        import tensorflow as tf

        names = []
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                names.append(tf.config.experimental.get_device_details(gpu).get("device_name") or gpu.name)
            except (RuntimeError, ValueError):
                names.append(gpu.name)
        return ", ".join(names) or ", ".join(gpus)
    import jax

    return ", ".join(f"{d.device_kind} {d}" for d in jax.devices("gpu"))


def _announce(backend: str, used: str, requested: str, gpus: list[str], detail: str) -> None:
    """Log the device choice once per process and backend/device pair."""
    if (backend, used) in _announced:
        return
    _announced.add((backend, used))
    version = importlib.import_module(backend).__version__  # the module's: also right for tensorflow-cpu
    if used == "gpu":
        LOGGER.info("device: GPU (%s) on %s %s, %s", _gpu_description(backend, gpus), backend, version, detail)
    elif requested == "cpu":
        LOGGER.info("device: CPU on %s %s (--device cpu)", backend, version)
    elif _driver_missing():  # no GPU in this process: nothing to suggest at INFO
        LOGGER.info("device: CPU on %s %s (no GPU found)", backend, version)
        LOGGER.debug("device: no GPU: %s", no_gpu_reason(backend))
    else:
        LOGGER.info("device: CPU on %s %s (a GPU is present but unusable: %s)", backend, version,
                    no_gpu_reason(backend))


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
        'gpu' or 'cpu': the device actually used (logged once per process).

    Raises
    ------
    DeviceError
        ``device='gpu'`` with no GPU visible (the message says why: driver, CUDA
        libraries or device), a Keras backend other than TensorFlow or JAX, ``threads``
        on JAX, or a different choice than an earlier call once TensorFlow has initialised.
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
        raise DeviceError(f"device 'gpu' was requested but TensorFlow sees no GPU: {no_gpu_reason('tensorflow')}")
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
    _announce("tensorflow", used, device, [g.name for g in gpus], "memory growth on")
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
        raise DeviceError(f"device 'gpu' was requested but JAX sees no GPU: {no_gpu_reason('jax')}")
    used = "gpu" if gpus and device != "cpu" else "cpu"
    prealloc = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true (JAX's default)")
    _announce("jax", used, device, gpus, f"XLA_PYTHON_CLIENT_PREALLOCATE={prealloc}")
    return used
