"""Device choice (issue 19): why no GPU, the one log line, memory growth before the model loads.

The probes (driver, CUDA libraries) are replaced by fakes to simulate each cause on a
machine without a GPU; TensorFlow is replaced by a fake module where a GPU must appear.
The ``gpu``-marked tests at the end segment a scan on a real GPU and skip without one.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import keras  # (the real Keras and TensorFlow load before any test fakes ``tensorflow``)
import nibabel as nib
import numpy as np
import pytest
import tensorflow  # noqa: F401

from synthseg_bids.inference import device as dev
from synthseg_bids.inference import DeviceError, InferenceSettings, Segmenter, configure_device, visible_gpus

ROOT = Path(__file__).resolve().parents[2]
DRIVER_OK: list[str] = []
BUILD = {"is_cuda_build": True, "cuda_version": "12.5.1", "cudnn_version": "9"}


@pytest.fixture
def fresh(monkeypatch):
    """A process state in which nothing was configured or logged yet (TensorFlow backend)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("simulates TensorFlow's devices; the Keras backend is not TensorFlow")
    monkeypatch.setattr(dev, "_configured", None)
    monkeypatch.setattr(dev, "_announced", set())
    return monkeypatch


def simulate(mp, *, driver=DRIVER_OK, build=BUILD, wheels=(), system_libs=False):
    """Make the probes see ``driver`` problems, TensorFlow ``build``, installed ``wheels``, system CUDA."""
    real_installed = dev._installed
    mp.setattr(dev, "_driver_missing", lambda: list(driver))
    mp.setattr(dev, "_tensorflow_build", lambda: dict(build))
    mp.setattr(dev, "_installed",
               lambda name: name in wheels if name.startswith(("nvidia", "jax-")) else real_installed(name))
    mp.setattr(dev, "_loadable", lambda lib: system_libs)


def gpu_error(mp) -> str:
    """The DeviceError message of ``configure_device('gpu')`` on TensorFlow without a visible GPU."""
    fake = fake_tensorflow(gpus=[], events=[])
    mp.setitem(sys.modules, "tensorflow", fake)
    with pytest.raises(DeviceError) as err:
        configure_device("gpu")
    message = str(err.value)
    assert "\n" not in message and message.startswith("device 'gpu' was requested but TensorFlow sees no GPU: ")
    return message


# -- the cause, one line ------------------------------------------------------------------
def test_no_driver(fresh):
    simulate(fresh, driver=["libcuda.so.1 cannot be loaded", "no /dev/nvidia<N> device file"],
             wheels=dev._CUDA_WHEELS["tensorflow"])
    message = gpu_error(fresh)
    assert "no NVIDIA driver (libcuda.so.1 cannot be loaded, no /dev/nvidia<N> device file;" in message
    assert "--gpus all" in message and "--nv" in message
    assert "no CUDA libraries" not in message and "no device" not in message


def test_tensorflow_without_cuda(fresh):
    simulate(fresh, build={"is_cuda_build": False})
    message = gpu_error(fresh)
    assert "no CUDA libraries: this TensorFlow is built without CUDA" in message
    assert "synthseg-bids[gpu]" in message and "no NVIDIA driver" not in message


def test_cuda_wheels_missing(fresh):
    simulate(fresh, wheels=("nvidia-cublas-cu12",))  # cuDNN absent, no system CUDA either
    message = gpu_error(fresh)
    assert "no CUDA libraries: TensorFlow needs CUDA 12.5.1 and cuDNN 9" in message
    assert "libcudnn.so.9" in message and "synthseg-bids[gpu]" in message


def test_system_cuda_counts_as_libraries(fresh):
    simulate(fresh, system_libs=True)
    assert "no CUDA libraries" not in gpu_error(fresh)


def test_driver_and_libraries_but_no_device(fresh):
    simulate(fresh, wheels=dev._CUDA_WHEELS["tensorflow"])
    fresh.setenv("CUDA_VISIBLE_DEVICES", "")
    message = gpu_error(fresh)
    assert message.endswith("no device: the NVIDIA driver and CUDA libraries are present but tensorflow lists "
                            "no GPU (CUDA_VISIBLE_DEVICES='')")


def test_two_causes_in_one_line(fresh):
    simulate(fresh, driver=["no /dev/nvidia<N> device file"], build={"is_cuda_build": False})
    message = gpu_error(fresh)
    assert "no NVIDIA driver (no /dev/nvidia<N> device file;" in message and "built without CUDA" in message


def test_jax_causes(fresh):
    simulate(fresh)
    fresh.setattr(dev, "visible_gpus", lambda: [])
    with pytest.raises(DeviceError, match=r"JAX sees no GPU: no CUDA libraries: jaxlib has no CUDA plugin .*"
                                          r"synthseg-bids\[gpu-jax\]"):
        dev._jax_device("gpu", None)
    simulate(fresh, wheels=("jax-cuda12-plugin",))
    assert dev.no_gpu_reason("jax").startswith("no device: ")


def test_driver_probe(monkeypatch):
    """The probe itself: libcuda loading, /dev/nvidia<N> and nvidia-smi, each faked."""
    def no_lib(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(dev.ctypes, "CDLL", no_lib)
    monkeypatch.setattr(dev.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(dev.shutil, "which", lambda name: None)
    assert dev._driver_missing() == ["libcuda.so.1 cannot be loaded", "no /dev/nvidia<N> device file",
                                     "no nvidia-smi on PATH"]
    monkeypatch.setattr(dev.ctypes, "CDLL", lambda name: object())
    monkeypatch.setattr(dev.glob, "glob", lambda pattern: ["/dev/nvidia0"] if pattern == "/dev/nvidia[0-9]*" else [])
    assert dev._driver_missing() == []


def test_real_probes_on_a_machine_without_gpu():
    """Unfaked: on a machine without an NVIDIA GPU the reason names the missing driver."""
    if visible_gpus() or os.path.exists("/dev/nvidia0"):
        pytest.skip("this machine has an NVIDIA GPU")
    reason = dev.no_gpu_reason("tensorflow")
    assert reason.startswith("no NVIDIA driver (") and "no /dev/nvidia<N> device file" in reason


# -- one INFO line per process --------------------------------------------------------------
def test_auto_without_gpu_logs_once_short_with_details_at_debug(fresh, caplog):
    """No GPU at all: a short INFO line that suggests nothing; the probes' findings at DEBUG (-v)."""
    simulate(fresh, driver=["no /dev/nvidia<N> device file"], build={"is_cuda_build": False})
    fresh.setitem(sys.modules, "tensorflow", fake_tensorflow(gpus=[], events=[]))
    with caplog.at_level(logging.DEBUG, logger="synthseg_bids.inference"):
        assert configure_device("auto") == "cpu"
        assert configure_device("auto") == "cpu"
    lines = [r for r in caplog.records if r.getMessage().startswith("device: ")]
    assert [r.levelno for r in lines] == [logging.INFO, logging.DEBUG]
    assert re.fullmatch(r"device: CPU on tensorflow [0-9.]+ \(no GPU found\)", lines[0].getMessage())
    assert "pip install" not in lines[0].getMessage() and "GPU node" not in lines[0].getMessage()
    assert lines[1].getMessage().startswith("device: no GPU: no NVIDIA driver (no /dev/nvidia<N> device file;")
    assert "pip install 'synthseg-bids[gpu]'" in lines[1].getMessage()


def test_auto_with_an_unusable_gpu_says_why_at_info(fresh, caplog):
    """A driver but no CUDA libraries: the INFO line says what is missing and what to install."""
    simulate(fresh, driver=DRIVER_OK, build={"is_cuda_build": False})
    fresh.setitem(sys.modules, "tensorflow", fake_tensorflow(gpus=[], events=[]))
    with caplog.at_level(logging.INFO, logger="synthseg_bids.inference"):
        assert configure_device("auto") == "cpu"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("device: ")]
    assert len(lines) == 1
    assert lines[0].endswith("(a GPU is present but unusable: no CUDA libraries: this TensorFlow is built "
                             "without CUDA (a CPU-only build); pip install 'synthseg-bids[gpu]')")


def test_cpu_request_logs_the_request(fresh, caplog):
    fresh.setitem(sys.modules, "tensorflow", fake_tensorflow(gpus=[], events=[]))
    with caplog.at_level(logging.INFO, logger="synthseg_bids.inference"):
        configure_device("cpu")
    assert [r.getMessage() for r in caplog.records if "device: " in r.getMessage()][0].endswith("(--device cpu)")


def test_auto_with_gpu_logs_the_gpu(fresh, caplog):
    events: list[str] = []
    fresh.setitem(sys.modules, "tensorflow", fake_tensorflow(gpus=["GPU:0"], events=events))
    with caplog.at_level(logging.INFO, logger="synthseg_bids.inference"):
        assert configure_device("auto") == "gpu"
        configure_device("gpu")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("device: ")]
    assert len(lines) == 1
    assert lines[0].startswith("device: GPU (NVIDIA Fake GPU:0) on tensorflow ")
    assert lines[0].endswith("memory growth on")
    assert events == ["memory_growth GPU:0"]


# -- memory growth before the first model load ------------------------------------------------
def test_memory_growth_is_set_before_the_model_is_loaded(fresh, tmp_path):
    events: list[str] = []
    fresh.setitem(sys.modules, "tensorflow", fake_tensorflow(gpus=["GPU:0", "GPU:1"], events=events))

    class Loaded(Exception):
        pass

    def load_model(path, dtype_policy):
        events.append("load_model")
        raise Loaded

    import synthseg_bids.network

    fresh.setattr(synthseg_bids.network, "load_model", load_model)
    model = tmp_path / "m.npz"
    model.write_bytes(b"")
    with pytest.raises(Loaded):
        Segmenter(model, InferenceSettings(device="auto", precision="float32"))  # no GPU details in the fake
    assert events == ["memory_growth GPU:0", "memory_growth GPU:1", "load_model"]


def test_jax_preallocation_is_off_before_jax_starts():
    """A fresh interpreter: importing the package sets it (unless set), before anything imports JAX."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    code = ("import sys, os, synthseg_bids; assert 'jax' not in sys.modules; "
            "print(os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "false"
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "true"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "true"


def fake_tensorflow(gpus: list[str], events: list[str]) -> types.ModuleType:
    """A stand-in ``tensorflow`` module with ``gpus`` and a config that records what is set."""
    devices = [types.SimpleNamespace(name=f"/physical_device:{g}", device_type="GPU", short=g) for g in gpus]

    def list_physical_devices(kind=None):
        return list(devices) if kind == "GPU" else []

    experimental = types.SimpleNamespace(
        set_memory_growth=lambda d, on: events.append(f"memory_growth {d.short}") if on else None,
        get_device_details=lambda d: {"device_name": f"NVIDIA Fake {d.short}"},
    )
    threading = types.SimpleNamespace(set_intra_op_parallelism_threads=lambda n: events.append(f"intra {n}"),
                                      set_inter_op_parallelism_threads=lambda n: events.append(f"inter {n}"))
    config = types.SimpleNamespace(list_physical_devices=list_physical_devices, experimental=experimental,
                                   threading=threading,
                                   set_visible_devices=lambda d, kind: events.append(f"visible {len(d)}"))
    module = types.ModuleType("tensorflow")
    module.config = config
    module.__version__ = "2.21.0"
    return module


# -- real GPU runs (skipped without one) -----------------------------------------------------
def _example_scan(tmp_path: Path) -> Path:
    from synthseg_bids.cli.example_data import make_example_dataset

    bids = make_example_dataset(tmp_path / "bids", resolution_mm=1.0, shape=(96, 96, 96), n_subjects=2)
    return bids / "sub-02" / "anat" / "sub-02_T1w.nii.gz"


@pytest.mark.gpu
def test_gpu_segmentation_matches_the_cpu(tmp_path, caplog):
    """The shipped model on a GPU (TensorFlow): logged as GPU, labels as on the CPU (other process)."""
    if not visible_gpus():
        pytest.skip(f"no GPU visible to the Keras backend ({dev.no_gpu_reason('tensorflow')})")
    scan = _example_scan(tmp_path)
    with caplog.at_level(logging.INFO, logger="synthseg_bids.inference"):
        result = Segmenter(settings=InferenceSettings(device="gpu")).segment(scan)
    assert any(r.getMessage().startswith("device: GPU (") for r in caplog.records)
    cpu_out = tmp_path / "cpu.npy"
    code = ("import sys, numpy as np; from synthseg_bids.inference import InferenceSettings, Segmenter; "
            "seg = Segmenter(settings=InferenceSettings(device='cpu')); "
            "np.save(sys.argv[2], seg.segment(sys.argv[1]).labels.data)")
    subprocess.run([sys.executable, "-c", code, str(scan), str(cpu_out)], check=True, cwd=ROOT)
    cpu = np.load(cpu_out)
    assert result.labels.shape == nib.load(scan).shape
    assert np.mean(result.labels.data == cpu) > 0.99


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install '.[gpu-jax]')")
def test_jax_gpu_segmentation(tmp_path):
    """One scan on JAX's GPU in a fresh process (the backend is fixed per process): device line and labels."""
    import jax

    try:
        jax.devices("gpu")
    except RuntimeError as err:
        pytest.skip(f"JAX sees no GPU ({dev.no_gpu_reason('jax')}; {err})")
    scan = _example_scan(tmp_path)
    code = ("import sys, time, logging, numpy as np; logging.basicConfig(level=logging.INFO); "
            "from synthseg_bids.inference import InferenceSettings, Segmenter, visible_gpus; "
            "assert visible_gpus(); "
            "seg = Segmenter(settings=InferenceSettings(device='gpu')); t = time.perf_counter(); "
            "np.save(sys.argv[2], seg.segment(sys.argv[1]).labels.data); "
            "print(f'seconds per scan (first, with compilation): {time.perf_counter() - t:.2f}')")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    run = subprocess.run([sys.executable, "-c", code, str(scan), str(tmp_path / "jax.npy")], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "device: GPU (" in run.stderr and "XLA_PYTHON_CLIENT_PREALLOCATE=false" in run.stderr
    print(run.stdout.strip())  # shown with -s: the figure for the closing notes
    labels = np.load(tmp_path / "jax.npy")
    assert labels.shape == nib.load(scan).shape and len(np.unique(labels)) > 10
