"""End to end on the real MNI152 T1 with the shipped model (skipped when either is missing)."""

import numpy as np
import pytest

from synthseg_bids.core.io import Image
from synthseg_bids.core.resample import resample_to_grid
from synthseg_bids.inference import InferenceSettings, Segmenter, default_model_path

WHITE_MATTER = [2, 41, 7, 46]


@pytest.mark.slow
def test_mni152_white_matter_matches_template():
    if not default_model_path().is_file():
        pytest.skip(f"no shipped model at {default_model_path()}")
    datasets = pytest.importorskip("nilearn.datasets", reason="nilearn (MNI152 template) not installed")
    try:
        t1 = datasets.load_mni152_template(resolution=1)
        wm = datasets.load_mni152_wm_template(resolution=1)
    except Exception as err:  # bundled files missing from this nilearn installation
        pytest.skip(f"MNI152 template unavailable: {err}")
    image = Image(np.asarray(t1.get_fdata(), np.float32), t1.affine)
    result = Segmenter(None, InferenceSettings()).segment(image)
    reference = resample_to_grid(np.asarray(wm.get_fdata(), np.float32), wm.affine, image.shape, image.affine) > 0.5
    predicted = np.isin(result.labels.data, WHITE_MATTER)
    dice = 2 * np.sum(predicted & reference) / (predicted.sum() + reference.sum())
    print(f"MNI152 grouped white matter Dice: {dice:.3f}")
    assert dice > 0.7
    assert 1.2e6 < result.volumes["total intracranial"] < 2.2e6
