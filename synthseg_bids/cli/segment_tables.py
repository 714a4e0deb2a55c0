"""The ``--vol`` and ``--qc`` CSV tables of ``synthseg-bids segment``.

``segment`` stands in for FreeSurfer's ``mri_synthseg``, so its tables keep that command's layout:
comma-separated values, one header row, one row per scan, one column per structure named as in
the label table. The numbers follow the same convention as the BIDS-App's volumes tables, which is
also ``mri_synthseg``'s:

- first column ``scan``: the file name without its image suffix (the folder is kept when two
  inputs share a name); rows are merged by it (``mri_synthseg`` names this column ``subject``);
- volume columns: the FreeSurfer names of the label table (``Left-Cerebral-White-Matter``, ...;
  parcels ``ctx-lh-bankssts``, ...; ``total intracranial``), mm^3 with 3 decimals (``%.3f``:
  ``mri_synthseg`` rounds its volumes to 3 decimals);
- QC columns: the score names (``general white matter confidence``, ...; with SynthSeg's QC
  network its 8 group names), 4 decimals (``%.4f``, as ``mri_synthseg`` writes its QC scores);
  then ``flag``, ``true`` or ``false`` (lower case, as the BIDS tables' ``qc_flag``; read as
  booleans by pandas);
- a missing value (a score that cannot be computed, e.g. the flip Dice of a structure group
  found in neither prediction, or a column that a row of an earlier run lacks) is an empty cell.

The BIDS tables differ only where BIDS asks: tab-separated, snake_case column names, ``n/a`` for
a missing value (:mod:`synthseg_bids.bids.tables`). Rows of an earlier run are kept as
they were written.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.io import write_table
from ..core.volumes import FLAG_TEXT, QC_FORMAT, VOLUME_FORMAT
from .segment_jobs import InputError

__all__ = ["Table", "format_values", "qc_row", "volume_row"]


def format_values(values: Mapping[str, float], number_format: str) -> dict[str, str]:
    """``{column: text}``: each value in ``number_format``, an empty cell for NaN.

    >>> format_values({"CSF": 1234.56789, "brainstem flip dice": float("nan")}, "%.3f")
    {'CSF': '1234.568', 'brainstem flip dice': ''}
    """
    return {str(name): "" if math.isnan(float(v)) else number_format % float(v) for name, v in values.items()}


def volume_row(result: Any) -> dict[str, str]:
    """The ``--vol`` row of a segmentation result: structure volumes, then parcel volumes if any."""
    volumes = {**result.volumes, **result.parcel_volumes}
    return format_values(volumes, VOLUME_FORMAT)


def qc_row(result: Any) -> dict[str, str]:
    """The ``--qc`` row: the QC network's 8 scores when it ran, else the posterior-based scores and ``flag``."""
    if result.network_qc is not None:
        return format_values(result.network_qc, QC_FORMAT)
    return {**format_values(result.qc.scores, QC_FORMAT), "flag": FLAG_TEXT[bool(result.qc.flag)]}


class Table:
    """A CSV with a ``scan`` column and one row per scan, merged with the existing file."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] = ["scan"]
        self.rows: dict[str, dict[str, str]] = {}
        if path.exists():
            try:
                with open(path, newline="") as stream:
                    reader = csv.DictReader(stream)
                    header = list(reader.fieldnames or [])
                    rows = list(reader)
            except (OSError, UnicodeDecodeError, csv.Error) as err:
                raise InputError(f"{path}: cannot be read as a CSV table ({err})") from None
            if not header or header[0] != "scan":
                raise InputError(
                    f"{path}: exists but is not a table written by this command (its first column is not "
                    "'scan'); remove it or choose another file"
                )
            self.columns = header
            for row in rows:
                self.rows[row["scan"]] = {k: v for k, v in row.items() if k is not None}

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def update(self, key: str, values: dict[str, str]) -> None:
        """Replace (or add) the row of ``key`` and rewrite the file atomically."""
        for column in values:
            if column not in self.columns:
                self.columns.append(column)
        self.rows[key] = {"scan": key, **values}
        import pandas as pd

        write_table(self.path, pd.DataFrame(list(self.rows.values()), columns=self.columns), sep=",", na_rep="")
