"""Shared fixtures: the real label maps (skipped when absent) and small synthetic data.

Plain helper functions live in ``tests/helpers.py`` (``from helpers import ...``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED_DATA, make_toy_label_map

os.environ.setdefault("NIPYPE_NO_ET", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real SynthSeg label maps and priors; skips the test when absent."""
    if not (SHARED_DATA / "training_label_maps").is_dir():
        pytest.skip(f"real label maps not available at {SHARED_DATA} (set SYNTHSEG_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def toy_label_map() -> np.ndarray:
    return make_toy_label_map()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model file of a tiny random-weight U-Net (2 levels, 4 features) over the 33 structures.

    Its segmentations are meaningless; tests use it to exercise files, names, geometry and errors.
    """
    from synthseg_bids.core.labels import default_label_table
    from synthseg_bids.network import ModelInfo, NetworkSettings, build_unet, save_model

    settings = NetworkSettings(base_features=4, n_levels=2, normalisation="none")
    info = ModelInfo(network=settings, label_table=default_label_table(), resolution_mm=1.0)
    return Path(save_model(tmp_path_factory.mktemp("model") / "tiny.npz", build_unet(settings, 33, seed=0), info))
