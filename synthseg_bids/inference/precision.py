"""Arithmetic precision of the network: float32, or bfloat16 where the device computes it natively.

bfloat16 keeps float32's exponent range with an 8-bit mantissa. Keras runs a model in it
with the ``mixed_bfloat16`` policy (float32 weights, bfloat16 computation); the segmenter
casts the posteriors back to float32. Where the hardware has bfloat16 arithmetic it halves
the network time on a CPU; elsewhere it is emulated and many times slower, so ``'auto'``
picks it only on such hardware:

- CPUs whose flags (``/proc/cpuinfo``) include ``avx512_bf16`` or ``amx_bf16``;
- NVIDIA GPUs of compute capability 8.0 or more (Ampere and later).

>>> resolve_precision("float32", "cpu")
'float32'
>>> keras_policy("bfloat16"), keras_policy("float32")
('mixed_bfloat16', 'float32')
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Iterator

from .device import LOGGER, DeviceError

__all__ = ["BF16_CPU_FLAGS", "bfloat16_support", "check_precision", "keras_policy", "policy_scope",
           "resolve_precision"]

#: CPU flags (as the Linux kernel names them) of native bfloat16 arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
#: Lowest NVIDIA compute capability with bfloat16 tensor cores (Ampere).
_BF16_CAPABILITY = (8, 0)
_CPUINFO = Path("/proc/cpuinfo")
#: (device, requested precision) pairs already logged by this process.
_announced: set[tuple[str, str]] = set()


@functools.lru_cache(maxsize=None)
def _cpu_flags(cpuinfo: Path = _CPUINFO) -> frozenset[str]:
    """The flags of the first processor listed in ``cpuinfo`` (empty if unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def _gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capabilities of the GPUs the Keras backend uses."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        found = []
        for device in jax.devices("gpu"):
            major, _, minor = str(getattr(device, "compute_capability", "0.0")).partition(".")
            found.append((int(major), int(minor or 0)))
        return found
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0)
        found.append(tuple(int(v) for v in capability))
    return found


def bfloat16_support(device: str) -> tuple[bool, str]:
    """Whether ``device`` ('cpu' or 'gpu', as used) computes bfloat16 natively, and why (one phrase)."""
    if device == "gpu":
        capabilities = _gpu_capabilities()
        if capabilities and min(capabilities) >= _BF16_CAPABILITY:
            return True, f"GPU compute capability {'.'.join(map(str, min(capabilities)))}"
        shown = ", ".join(".".join(map(str, c)) for c in capabilities) or "unknown"
        return False, f"GPU compute capability {shown} (bfloat16 needs 8.0 or more)"
    flags = _cpu_flags()
    found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    if found:
        return True, f"CPU flag {found[0]}"
    return False, f"the CPU has neither {' nor '.join(BF16_CPU_FLAGS)}"


def resolve_precision(requested: str, device: str) -> str:
    """The precision that runs: ``requested`` ('auto', 'float32', 'bfloat16') on ``device`` ('cpu'/'gpu').

    Raises
    ------
    DeviceError
        'bfloat16' on a device without native bfloat16 arithmetic (one line that says
        why and what to use instead).
    """
    if requested == "float32":
        return "float32"
    native, why = bfloat16_support(device)
    if requested == "bfloat16" and not native:
        raise DeviceError(
            f"precision bfloat16 needs native bfloat16 arithmetic, but {why}: emulated, it is many times "
            "slower; use --precision float32 or auto"
        )
    if requested not in ("auto", "bfloat16"):
        raise ValueError(f"unknown precision {requested!r}; use 'auto', 'float32' or 'bfloat16'")
    used = "bfloat16" if native else "float32"
    if (device, requested) not in _announced:
        _announced.add((device, requested))
        LOGGER.info("precision: %s (%s; --precision %s)", used, why, requested)
    return used


def check_precision(requested: str, device: str) -> None:
    """Refuse, before any work, a precision that ``device`` ('auto', 'cpu', 'gpu' as asked) cannot run.

    The device that will be used is that of :func:`~synthseg_bids.inference.device.configure_device`:
    a GPU when one is visible and ``device`` is not 'cpu'.

    Raises
    ------
    DeviceError
        As :func:`resolve_precision`.
    """
    from .device import visible_gpus

    resolve_precision(requested, "gpu" if device != "cpu" and visible_gpus() else "cpu")


def keras_policy(precision: str) -> str:
    """The Keras dtype policy of a resolved precision."""
    return {"float32": "float32", "bfloat16": "mixed_bfloat16"}[precision]


@contextlib.contextmanager
def policy_scope(precision: str) -> Iterator[None]:
    """Keras layers created inside take the policy of ``precision`` (for models built without one)."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras_policy(precision))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)
