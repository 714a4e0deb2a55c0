"""estimate_priors against a brute-force per-class median / MAD (scipy) and known Gaussians."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from helpers import make_toy_label_map
from synthseg_bids.generator import GenerationSpec, GeneratorSettings, estimate_priors
from synthseg_bids.generator.priors import rescale_robust

LABELS = np.array([0, 258, 24, 3, 42, 2, 41, 4, 43, 16])
CLASSES = np.array([0, 1, 2, 3, 3, 4, 4, 5, 5, 6])  # left/right pooled


def _subject(seed):
    rng = np.random.default_rng(seed)
    label_map = make_toy_label_map((40, 40, 40), seed=seed)
    true_means = rng.uniform(30, 200, CLASSES.max() + 1)
    true_stds = rng.uniform(3, 10, CLASSES.max() + 1)
    lut = np.zeros(LABELS.max() + 1, int)
    lut[LABELS] = CLASSES
    voxel_class = lut[label_map]
    image = true_means[voxel_class] + true_stds[voxel_class] * rng.standard_normal(label_map.shape)
    return image, label_map, voxel_class


def test_matches_brute_force_median_and_mad(tmp_path):
    subjects = [_subject(s) for s in range(3)]
    prior_means, prior_stds = estimate_priors(
        [s[0] for s in subjects], [s[1] for s in subjects], LABELS, CLASSES, rescale=False, out_dir=tmp_path
    )
    medians, mads = [], []
    for image, _, voxel_class in subjects:
        per_class = [image[(voxel_class == k) & ((image > 0) | (k == 0))] for k in range(CLASSES.max() + 1)]
        medians.append([np.median(v) for v in per_class])
        mads.append([stats.median_abs_deviation(v, scale="normal") for v in per_class])
    medians, mads = np.array(medians), np.array(mads)
    np.testing.assert_allclose(prior_means, [medians.mean(0), medians.std(0)], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(prior_stds, [mads.mean(0), mads.std(0)], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(np.load(tmp_path / "prior_means.npy"), prior_means)
    np.testing.assert_array_equal(np.load(tmp_path / "prior_stds.npy"), prior_stds)


def test_recovers_known_gaussians_and_feeds_the_generator(tmp_path):
    image, label_map, voxel_class = _subject(5)
    prior_means, prior_stds = estimate_priors([image], [label_map], LABELS, CLASSES, rescale=False, out_dir=tmp_path)
    rng = np.random.default_rng(5)
    true_means, true_stds = rng.uniform(30, 200, 7), rng.uniform(3, 10, 7)
    counts = np.bincount(voxel_class.ravel())
    np.testing.assert_allclose(prior_means[0], true_means, atol=(5 * 1.26 * true_stds / np.sqrt(counts)).max())
    # asymptotic sd of the normal-consistent MAD: ~1.17 sigma / sqrt(n)
    assert np.all(np.abs(prior_stds[0] - true_stds) <= 5 * 1.17 * true_stds / np.sqrt(counts))
    assert np.all(prior_means[1] == 0)  # one subject: no spread across subjects

    from synthseg_bids.generator.layers import LabelsToImage

    spec = GenerationSpec.from_labels(LABELS, generation_classes=CLASSES)
    settings = GeneratorSettings(output_shape=(16, 16, 16), prior_distribution="normal",
                                 prior_means=tmp_path / "prior_means.npy", prior_stds=tmp_path / "prior_stds.npy")
    layer = LabelsToImage(spec, settings, seed=0)
    np.testing.assert_allclose(layer.spec.prior_means, prior_means)


def test_rescale_and_errors():
    x = np.arange(101, dtype=float)
    out = rescale_robust(x)
    assert out.min() == 0 and out.max() == 255 and out[50] == pytest.approx(127.5)
    with pytest.raises(ValueError, match="as many images"):
        estimate_priors([x], [], LABELS)
