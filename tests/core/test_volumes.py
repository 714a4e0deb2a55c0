"""Volumes from posteriors and label maps."""

import numpy as np
import pytest

from synthseg_bids.core.labels import default_label_table
from synthseg_bids.core.volumes import TOTAL_INTRACRANIAL, volumes_from_labels, volumes_from_posteriors, voxel_volume


@pytest.fixture
def case():
    table = default_label_table()
    rng = np.random.default_rng(0)
    values = rng.choice([0, 2, 41, 17, 24], size=(10, 12, 9), p=[0.4, 0.2, 0.2, 0.1, 0.1])
    affine = np.array([[0, 0, 2.5, 3], [1.2, 0, 0, -1], [0, -0.8, 0, 2], [0, 0, 0, 1]], float)
    return table, values.astype(np.int32), affine


def test_voxel_volume():
    assert voxel_volume(np.array([[0, 0, 2.5, 3], [1.2, 0, 0, -1], [0, -0.8, 0, 2], [0, 0, 0, 1]])) == pytest.approx(2.4)


def test_one_hot_posteriors_equal_voxel_counts(case):
    table, values, affine = case
    post = np.eye(len(table), dtype=np.float32)[table.index_of(values)]
    vols = volumes_from_posteriors(post, affine, table)
    for value, name in [(2, "Left-Cerebral-White-Matter"), (41, "Right-Cerebral-White-Matter"), (17, "Left-Hippocampus"),
                        (24, "CSF"), (4, "Left-Lateral-Ventricle")]:
        assert vols[name] == pytest.approx(np.count_nonzero(values == value) * 2.4)
    assert vols[TOTAL_INTRACRANIAL] == pytest.approx(np.count_nonzero(values) * 2.4)
    assert "Unknown" not in vols
    assert list(vols)[-1] == TOTAL_INTRACRANIAL
    assert vols == pytest.approx(volumes_from_labels(values, affine, table))


def test_soft_posteriors_sum_of_probabilities(case):
    table, values, affine = case
    post = np.zeros(values.shape + (len(table),), np.float32)
    post[..., 0] = 0.75
    post[..., table.index_of([17])[0]] = 0.25
    vols = volumes_from_posteriors(post, affine, table)
    assert vols["Left-Hippocampus"] == pytest.approx(values.size * 0.25 * 2.4)
    assert vols[TOTAL_INTRACRANIAL] == pytest.approx(values.size * 0.25 * 2.4)


def test_unknown_labels_are_errors(case):
    table, values, affine = case
    values[0, 0, 0] = 99
    with pytest.raises(ValueError, match="99"):
        volumes_from_labels(values, affine, table)
