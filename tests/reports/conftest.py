"""Fixtures of the report tests (the data builders: ``report_data.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthseg_bids.core.labels import default_label_table


@pytest.fixture
def derivatives(tmp_path) -> Path:
    """A derivatives folder with ``dseg.tsv`` (add scans with :func:`add_scan`)."""
    out = tmp_path / "out"
    out.mkdir()
    default_label_table().write_dseg_tsv(out / "dseg.tsv")
    return out
