"""Plain helpers shared by the tests (fixtures stay in ``conftest.py``).

Test modules import them with ``from helpers import ...`` (pytest puts ``tests/`` on the
path for its ``conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: ``../shared/data/synthseg`` from the project root (override with SYNTHSEG_SHARED_DATA).
SHARED_DATA = Path(
    os.environ.get("SYNTHSEG_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthseg")
)


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


#: Intensity of each label of :func:`make_toy_label_map` in :func:`toy_head` (an MRI-like scale).
TOY_HEAD_INTENSITY = {0: 0.0, 258: 30.0, 24: 15.0, 3: 50.0, 42: 60.0, 2: 90.0, 41: 100.0, 4: 20.0, 43: 25.0, 16: 75.0}


def toy_head(shape=(28, 28, 28), seed=0) -> np.ndarray:
    """:func:`make_toy_label_map` as a float32 scan, each label at its :data:`TOY_HEAD_INTENSITY`."""
    labels = make_toy_label_map(shape, seed=seed)
    lut = np.zeros(labels.max() + 1, np.float32)
    for value, intensity in TOY_HEAD_INTENSITY.items():
        lut[value] = intensity
    return lut[labels]


def run_main(capsys, *args) -> tuple[int, str]:
    """Exit status and stderr of ``synthseg-bids ARGS`` run in this process (argparse exits are caught)."""
    from synthseg_bids.cli.main import main

    try:
        code = main([*map(str, args)])
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().err


def labels_of(path: Path) -> np.ndarray:
    """The voxel values of a label map file."""
    import nibabel as nib

    return np.asarray(nib.load(path).dataobj)


def mni152(kind: str = "t1"):
    """nilearn's MNI152 template at 1 mm as a nibabel image: the T1 (``"t1"``) or its white-matter
    map (``"wm"``); skips the calling test when nilearn or its bundled files are missing."""
    import pytest

    datasets = pytest.importorskip("nilearn.datasets", reason="nilearn (MNI152 template) not installed")
    load = {"t1": datasets.load_mni152_template, "wm": datasets.load_mni152_wm_template}[kind]
    try:
        return load(resolution=1)
    except Exception as err:  # bundled files missing from this nilearn installation
        pytest.skip(f"MNI152 template unavailable: {err}")


def shipped_model() -> Path:
    """The model shipped with the package; skips the calling test when it is not installed."""
    import pytest

    from synthseg_bids.inference import default_model_path

    if not default_model_path().is_file():
        pytest.skip(f"no shipped model at {default_model_path()}")
    return default_model_path()


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
