"""End to end on the real MNI152 T1 with the shipped model (skipped when either is missing)."""

import numpy as np
import pytest
from helpers import mni152, shipped_model

from synthseg_bids.core.io import Image
from synthseg_bids.core.resample import resample_to_grid
from synthseg_bids.inference import InferenceSettings, Segmenter

WHITE_MATTER = [2, 41, 7, 46]


@pytest.mark.slow
def test_mni152_white_matter_matches_template():
    model = shipped_model()
    t1, wm = mni152("t1"), mni152("wm")
    image = Image(np.asarray(t1.get_fdata(), np.float32), t1.affine)
    result = Segmenter(model, InferenceSettings()).segment(image)
    reference = resample_to_grid(np.asarray(wm.get_fdata(), np.float32), wm.affine, image.shape, image.affine) > 0.5
    predicted = np.isin(result.labels.data, WHITE_MATTER)
    dice = 2 * np.sum(predicted & reference) / (predicted.sum() + reference.sum())
    print(f"MNI152 grouped white matter Dice: {dice:.3f}")
    assert dice > 0.7
    assert 1.2e6 < result.volumes["total intracranial"] < 2.2e6
