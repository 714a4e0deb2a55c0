"""GenerationSpec helpers used by the whole-job commands: class means, the spec next to label maps."""

from __future__ import annotations

import numpy as np
import pytest

from synthseg_bids.generator.spec import GenerationSpec, spec_next_to


def _spec_with_priors():
    means = np.array([[10.0, 20.0, 30.0], [1.0, 2.0, 3.0]])
    spec = GenerationSpec.from_labels([0, 2, 3, 41, 42], prior_means=means, prior_stds=means / 10)
    return spec, means  # classes (left/right sharing): 0 | 2, 41 | 3, 42


def test_with_class_means_replaces_only_the_given_means():
    spec, means = _spec_with_priors()
    changed = spec.with_class_means({2: 99.0})
    expected = means.copy()
    expected[0, 2] = 99.0
    np.testing.assert_array_equal(changed.prior_means, expected)
    np.testing.assert_array_equal(changed.prior_stds, spec.prior_stds)
    np.testing.assert_array_equal(spec.prior_means, means)  # the original is unchanged
    with pytest.raises(ValueError, match="class 3 is not a generation class"):
        spec.with_class_means({3: 1.0})
    with pytest.raises(ValueError, match="needs a spec with prior means"):
        GenerationSpec.from_labels([0, 2, 41]).with_class_means({1: 1.0})


def test_spec_next_to_label_maps(tmp_path):
    maps = tmp_path / "training_label_maps"
    maps.mkdir()
    assert spec_next_to(maps) is None  # no labels_classes_priors folder beside it
    priors = tmp_path / "labels_classes_priors"
    priors.mkdir()
    np.save(priors / "generation_labels.npy", np.array([0, 2, 41, 3, 42]))
    np.save(priors / "generation_classes.npy", np.array([0, 1, 1, 2, 2]))
    spec = spec_next_to(maps)
    np.testing.assert_array_equal(spec.generation_labels, [0, 2, 41, 3, 42])
    np.testing.assert_array_equal(spec.generation_classes, [0, 1, 1, 2, 2])
