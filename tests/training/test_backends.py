"""Train on JAX (subprocess), then load and resume on TensorFlow (this process)."""

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
from toy_data import TOY_TABLE, toy_pair

from synthseg_bids.network import NetworkSettings, load_model
from synthseg_bids.training import AugmentationSettings, TrainingSettings, read_checkpoint, train_supervised

ROOT = Path(__file__).resolve().parents[2]
NETWORK = NetworkSettings(n_levels=2, base_features=8)
CROP = AugmentationSettings(crop_shape=(16, 16, 16))
SETTINGS = TrainingSettings(epochs=1, wl2_epochs=0, steps_per_epoch=2, seed=5, learning_rate=1e-3)

_SCRIPT = """
import sys, numpy as np, keras
from pathlib import Path
from synthseg_bids.core.labels import LabelTable
from synthseg_bids.network import NetworkSettings, load_model
from synthseg_bids.training import AugmentationSettings, TrainingSettings, train_supervised
assert keras.backend.backend() == "jax"
image, labels, out, x = sys.argv[1:5]
path = train_supervised([image], [labels], out, NetworkSettings.from_json({network!r}),
                        TrainingSettings.from_json({settings!r}), AugmentationSettings.from_json({crop!r}),
                        label_table=LabelTable.from_values({values!r}))
model, _ = load_model(path)
np.save(Path(out) / "jax_prediction.npy", np.asarray(model(np.load(x), training=False)))
"""


@pytest.mark.slow  # ~25 s alone, ~50 s on a busy 2-core machine
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="compares JAX with the TensorFlow backend")
def test_train_on_jax_then_load_and_resume_on_tensorflow(tmp_path):
    image, labels = toy_pair(tmp_path)
    x = np.random.default_rng(0).random((1, 16, 24, 16, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(_SCRIPT).format(
        network=NETWORK.to_json(), settings=SETTINGS.to_json(), crop=CROP.to_json(), values=TOY_TABLE.values.tolist()
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", script, str(image), str(labels), str(tmp_path / "run"), str(tmp_path / "x.npy")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    model, info = load_model(tmp_path / "run" / "model.npz")
    np.testing.assert_allclose(np.asarray(model(x, training=False)), np.load(tmp_path / "run" / "jax_prediction.npy"),
                               atol=1e-5)
    assert info.provenance["sessions"][0]["backend"] == "jax"

    # resume the JAX run on TensorFlow for one more epoch
    train_supervised([image], [labels], tmp_path / "run", NETWORK, SETTINGS.replace(epochs=2, jit_compile="off"),
                     CROP, label_table=TOY_TABLE)
    second = read_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_0002.npz")
    assert second.state.epoch == 2
    assert int(second.contents.arrays["optimizer/0000"]) == 4  # 2 JAX steps + 2 TensorFlow steps
    assert second.contents.extra["checkpoint"]["backend"] == "tensorflow"
    assert [s["backend"] for s in second.info.provenance["sessions"]] == ["jax", "tensorflow"]
