"""The ``--vol``/``--qc`` tables of ``synthseg-bids segment``: their text convention, checked against
literal expected text, Python's correctly rounded ``round`` and FreeSurfer 7.3.2's own CSV writer."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from freesurfer_oracle import load_oracle

from synthseg_bids.cli.segment_jobs import InputError
from synthseg_bids.cli.segment_tables import Table, format_values, qc_row, volume_row


def fake_result(volumes, scores, flag):
    return SimpleNamespace(volumes=volumes, qc=SimpleNamespace(scores=scores, flag=flag), parcel_volumes={},
                           network_qc=None)


def test_rows_have_three_and_four_decimals_lower_case_flags_and_empty_missing_cells():
    rng = np.random.default_rng(7)
    volumes = {f"s{i}": float(v) for i, v in enumerate(rng.uniform(0, 5e5, 50))}
    scores = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0, 1, 50))}
    scores["thalamus flip dice"] = float("nan")
    row = volume_row(fake_result(volumes, scores, True))
    assert list(row) == list(volumes)
    for name, value in volumes.items():
        assert re.fullmatch(r"\d+\.\d{3}", row[name]), row[name]
        assert float(row[name]) == round(value, 3)
    qc = qc_row(fake_result(volumes, scores, False))
    assert list(qc) == [*scores, "flag"] and qc["flag"] == "false" and qc["thalamus flip dice"] == ""
    for name, value in scores.items():
        if np.isfinite(value):
            assert re.fullmatch(r"[01]\.\d{4}", qc[name]) and float(qc[name]) == round(value, 4)
    assert qc_row(fake_result({}, {"a": 0.5}, True)) == {"a": "0.5000", "flag": "true"}


def test_table_keeps_earlier_rows_verbatim_and_leaves_missing_cells_empty(tmp_path):
    path = tmp_path / "vol.csv"
    path.write_text("scan,CSF,total intracranial\nold,1.0,2.0\n")
    table = Table(path)
    assert "old" in table and "new" not in table
    table.update("new", volume_row(fake_result({"CSF": 3.14159, "Left-Thalamus": 7000.0, "total intracranial": 7003.14159},
                                               {}, False)))
    assert path.read_text() == ("scan,CSF,total intracranial,Left-Thalamus\n"
                                "old,1.0,2.0,\n"
                                "new,3.142,7003.142,7000.000\n")
    frame = pd.read_csv(path)
    assert np.isnan(frame.loc[0, "Left-Thalamus"]) and frame.loc[1, "CSF"] == 3.142


def test_qc_flags_read_back_as_booleans(tmp_path):
    path = tmp_path / "qc.csv"
    table = Table(path)
    table.update("a", qc_row(fake_result({}, {"brainstem confidence": 0.91}, False)))
    table.update("b", qc_row(fake_result({}, {"brainstem confidence": 0.12}, True)))
    frame = pd.read_csv(path)
    assert frame["flag"].dtype == bool and frame["flag"].tolist() == [False, True]


def test_a_table_of_another_program_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("subject,CSF\na,1\n")
    with pytest.raises(InputError, match=r"other\.csv: exists but is not a table written by this command"):
        Table(path)


def test_values_equal_those_mri_synthseg_writes(tmp_path):
    """FreeSurfer's ``write_csv`` with the rounding of its ``postprocess`` (volumes, ``np.around(., 3)``)
    and of its QC (``'%.4f'`` of ``np.around(., 4)``): the same numbers, the same QC text."""
    fs = load_oracle()
    rng = np.random.default_rng(3)
    names = ["Left-Cerebral-White-Matter", "CSF", "total intracranial"]
    volumes = dict(zip(names, rng.uniform(10, 5e5, 3).tolist()))
    scores = dict(zip(["general white matter", "brainstem"], rng.uniform(0, 1, 2).tolist()))

    theirs = tmp_path / "fs_vol.csv"
    labels = np.arange(len(names) + 1)
    fs.write_csv(str(theirs), None, True, labels, np.array(["background", *names]))
    fs.write_csv(str(theirs), ["s"] + [str(v) for v in np.around(list(volumes.values()), 3)], True, labels,
                 np.array(["background", *names]))
    ours = tmp_path / "vol.csv"
    Table(ours).update("s", volume_row(fake_result(volumes, {}, False)))
    expected = pd.read_csv(theirs).set_index("subject").loc["s"]
    got = pd.read_csv(ours).set_index("scan").loc["s"]
    for name in names:
        assert got[name] == expected[name], name

    theirs = tmp_path / "fs_qc.csv"
    values = np.around(np.array(list(scores.values())), 4)
    labels = np.arange(len(scores) + 1)
    fs.write_csv(str(theirs), ["s"] + ["%.4f" % q for q in values], False, labels, np.array(["bg", *scores]))
    fs_cells = theirs.read_text().splitlines()[1].split(",")[1:]
    assert list(format_values(scores, "%.4f").values()) == fs_cells
