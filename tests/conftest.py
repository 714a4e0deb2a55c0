"""Shared fixtures: the real label maps (skipped when absent) and small synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NIPYPE_NO_ET", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: ``../shared/data/synthseg`` from the project root (override with SYNTHSEG_SHARED_DATA).
SHARED_DATA = Path(
    os.environ.get("SYNTHSEG_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthseg")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real SynthSeg label maps and priors; skips the test when absent."""
    if not (SHARED_DATA / "training_label_maps").is_dir():
        pytest.skip(f"real label maps not available at {SHARED_DATA} (set SYNTHSEG_SHARED_DATA)")
    return SHARED_DATA


def make_toy_label_map(shape=(32, 32, 32), seed=0) -> np.ndarray:
    """A small brain-like label map made of nested ellipsoids, with left/right pairs.

    Values are FreeSurfer labels: background 0, a 'scalp' shell (258, extra-cerebral),
    CSF 24, left/right cerebral white matter (2/41) inside cortex (3/42), left/right
    lateral ventricles (4/43) and a brain stem (16). Array axis 0 runs left to right
    (the affine returned by :func:`toy_affine` is RAS, 1 mm).
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    jitter = 1 + 0.03 * rng.standard_normal(3)
    r = np.sqrt(((grid / jitter[:, None, None, None]) ** 2).sum(0))
    x = grid[0]
    labels = np.zeros(shape, np.int32)
    labels[r < 0.95] = 258
    labels[r < 0.85] = 24
    left = x < 0
    labels[(r < 0.78) & left] = 3
    labels[(r < 0.78) & ~left] = 42
    labels[(r < 0.62) & left] = 2
    labels[(r < 0.62) & ~left] = 41
    vent = ((np.abs(x) - 0.2) ** 2 / 0.01 + grid[1] ** 2 / 0.09 + grid[2] ** 2 / 0.02) < 1
    labels[vent & left] = 4
    labels[vent & ~left] = 43
    stem = (x**2 / 0.02 + grid[1] ** 2 / 0.02 + (grid[2] + 0.55) ** 2 / 0.04) < 1
    labels[stem] = 16
    return labels


def toy_affine(voxel=1.0) -> np.ndarray:
    aff = np.diag([voxel, voxel, voxel, 1.0])
    aff[:3, 3] = -16 * voxel
    return aff


#: Fast prediction settings for BIDS-App tests: no flip, no post-processing, small network input.
FAST_TOML = 'flip = false\npostprocess = "none"\nsmoothing_sigma = 0.0\nmin_size = 16\n'


def make_app_data(root: Path, model: Path, *, shape=(20, 20, 20), n_subjects: int = 2) -> dict:
    """The example BIDS dataset at 1 mm with ``shape`` voxels, a model and a fast-settings TOML under ``root``.

    Returns ``{"root", "bids", "model", "fast"}``, what the BIDS-App tests pass to the command line.
    """
    from synthseg_bids.cli.example_data import make_example_dataset

    bids = make_example_dataset(root / "bids", resolution_mm=1.0, shape=shape, n_subjects=n_subjects)
    fast = root / "fast.toml"
    fast.write_text(FAST_TOML)
    return {"root": root, "bids": bids, "model": Path(model), "fast": fast}


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
