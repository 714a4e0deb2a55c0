"""The layer on the JAX backend, inside jax.jit (subprocess: the backend is fixed per process)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import jax, keras, numpy as np
from helpers import make_toy_label_map
from synthseg_bids.generator import GenerationSpec, GeneratorSettings, LabelsToImage
assert keras.backend.backend() == "jax"
labels = make_toy_label_map((28, 28, 28))
spec = GenerationSpec.from_labels(np.unique(labels))
idx = np.stack([spec.index_lut()[labels].astype(np.uint8)] * 2)
layer = LabelsToImage(spec, GeneratorSettings(output_shape=(20, 20, 20)), seed=0)
layer.build(idx.shape)
state = [v.value for v in layer.non_trainable_variables]

@jax.jit
def step(state, x):
    (image, target), state = layer.stateless_call([], state, x)
    return image, target, state

image, target, state1 = step(state, idx)
again, _, _ = step(state, idx)
image2, _, _ = step(state1, idx)
allowed = set(spec.channel_of_index.tolist())
print(json.dumps({
    "image_shape": list(image.shape), "target_shape": list(target.shape), "dtype": str(image.dtype),
    "in_range": bool((image >= 0).all() and (image <= 1 + 1e-6).all()),
    "one_hot": bool((target.sum(-1) == 1).all()),
    "channels_ok": set(np.unique(np.argmax(target, -1)).tolist()) <= allowed,
    "same_state_same_output": bool((image == again).all()),
    "next_state_differs": bool(not np.allclose(image, image2)),
}))
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_layer_runs_in_jax_jit():
    tests_dir = Path(__file__).resolve().parents[1]
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    env["PYTHONPATH"] = os.pathsep.join([str(tests_dir.parent), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tests_dir)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {
        "image_shape": [2, 20, 20, 20, 1], "target_shape": [2, 20, 20, 20, 33], "dtype": "float32",
        "in_range": True, "one_hot": True, "channels_ok": True,
        "same_state_same_output": True, "next_state_differs": True,
    }
