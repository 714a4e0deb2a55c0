"""Prediction on the JAX backend (subprocess: the backend is fixed per process) equals TensorFlow's."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from synthseg_bids.core.io import save_image
from synthseg_bids.core.labels import default_label_table
from synthseg_bids.inference import InferenceSettings, Segmenter

from inference_fakes import phantom

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = InferenceSettings(device="cpu", min_size=16, flip=True)

_SCRIPT = """
import sys, numpy as np, keras, pytest
from synthseg_bids.inference import DeviceError, InferenceSettings, Segmenter, configure_device, visible_gpus
assert keras.backend.backend() == "jax"
model, scan, out = sys.argv[1:4]
result = Segmenter(model, InferenceSettings.from_json({settings!r})).segment(scan, posteriors=True)
assert result.posteriors.dtype == np.float32
np.savez(out, labels=result.labels.data, posteriors=result.posteriors)
with pytest.raises(DeviceError, match="threads=2 cannot be set on the JAX backend"):
    configure_device("cpu", threads=2)
if not visible_gpus():
    with pytest.raises(DeviceError, match="JAX sees no GPU"):
        configure_device("gpu")
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="compares JAX with the TensorFlow backend")
def test_jax_prediction_equals_tensorflow(tmp_path):
    from synthseg_bids.network import ModelInfo, NetworkSettings, build_unet, save_model

    network = NetworkSettings(n_levels=2, base_features=4, conv_per_level=1)
    model = save_model(tmp_path / "tiny.npz", build_unet(network, 33, seed=3),
                       ModelInfo(network=network, label_table=default_label_table()))
    image, _ = phantom((32, 32, 32))
    scan = save_image(image, np.diag([1.0, 1.0, 1.0, 1.0]), tmp_path / "sub-01_T1w.nii.gz")
    script = textwrap.dedent(_SCRIPT).format(settings=SETTINGS.to_json())
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script, str(model), str(scan), str(tmp_path / "jax.npz")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    jax_result = np.load(tmp_path / "jax.npz")
    result = Segmenter(model, SETTINGS).segment(scan, posteriors=True)
    np.testing.assert_allclose(jax_result["posteriors"], result.posteriors, atol=1e-4)
    np.testing.assert_array_equal(jax_result["labels"], result.labels.data)
