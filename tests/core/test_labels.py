"""Label table: values, left/right pairs, dseg.tsv, generation -> segmentation mapping."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from synthseg_bids.core.labels import LabelTable, default_label_table, segmentation_labels_for


def _read_table(shared_data):
    rows = []
    for line in (shared_data / "labels_table.txt").read_text().splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].isdigit():
            rows.append((int(parts[0]), parts[1].strip()))
    return rows


def test_default_table_matches_original_label_list(shared_data):
    rows = _read_table(shared_data)
    table = default_label_table()
    assert table.values.tolist() == [v for v, _ in rows]
    # the hemisphere in the original's description agrees with the FreeSurfer name
    for (value, description), structure in zip(rows, table):
        if description.startswith("left"):
            assert structure.hemisphere == "left"
        elif description.startswith("right"):
            assert structure.hemisphere == "right"
        else:
            assert structure.hemisphere == ""


def test_default_table_size_and_pairs():
    table = default_label_table()
    assert len(table) == 33 and table.values[0] == 0
    perm = table.flip_permutation
    # an involution that swaps 14 left/right pairs and fixes the 5 unpaired labels
    np.testing.assert_array_equal(perm[perm], np.arange(33))
    assert int(np.sum(perm != np.arange(33))) == 28
    swapped = dict(zip(table.values.tolist(), table.values[perm].tolist()))
    assert swapped[2] == 41 and swapped[60] == 28 and swapped[16] == 16 and swapped[24] == 24
    # FreeSurfer's convention: right = left + 39 for cerebral/subcortical labels below 14
    for left in (2, 3, 4, 5, 7, 8, 10, 11, 12, 13):
        assert swapped[left] == left + 39


def test_index_of_is_vectorised_and_strict():
    table = default_label_table()
    labels = np.array([[0, 2], [60, 24]])
    np.testing.assert_array_equal(table.values[table.index_of(labels)], labels)
    with pytest.raises(ValueError, match="99"):
        table.index_of([0, 99])
    with pytest.raises(ValueError):
        table.index_of([1000])


def test_dseg_tsv_is_bids_lookup(tmp_path):
    table = default_label_table()
    path = table.write_dseg_tsv(tmp_path / "dseg.tsv")
    rows = list(csv.DictReader(io.StringIO(path.read_text()), delimiter="\t"))
    assert list(rows[0]) == ["index", "name", "abbreviation", "color"]
    assert len(rows) == 33
    assert len({r["abbreviation"] for r in rows}) == 33
    wm = next(r for r in rows if r["index"] == "2")
    assert wm["name"] == "Left-Cerebral-White-Matter" and wm["color"] == "#f5f5f5"
    assert all(len(r["color"]) == 7 and r["color"].startswith("#") for r in rows)


def test_metadata_round_trip_and_mismatch():
    table = LabelTable.from_values([0, 2, 41])
    assert LabelTable.from_metadata(table.to_metadata()) == table
    with pytest.raises(ValueError, match="names"):
        LabelTable.from_metadata([{"value": 0, "name": "Unknown"}, {"value": 2, "name": "Right-Thing"}])
    with pytest.raises(ValueError, match="unknown"):
        LabelTable.from_values([0, 12345])
    with pytest.raises(ValueError, match="background"):
        LabelTable.from_values([2, 0])


def test_segmentation_labels_match_synthseg_2_list(shared_data):
    lcp = shared_data / "labels_classes_priors"
    generation = np.load(lcp / "generation_labels.npy")
    expected_2 = np.load(lcp / "synthseg_segmentation_labels_2.0.npy")
    # the 2.0 list has one extra entry (a 0) inserted after index 17 (README of the data)
    assert expected_2[17] == 0 and expected_2[18] == 0
    expected = np.delete(expected_2, 18)
    got = segmentation_labels_for(generation, default_label_table())
    np.testing.assert_array_equal(got, expected)
    assert set(got.tolist()) == set(default_label_table().values.tolist())
