"""Compare two BIDS-App output folders file by file (a regression check across code changes).

    python benchmarks/compare_derivatives.py BEFORE_OUT AFTER_OUT

For every derivative (``sub-*/**``, ``dseg.tsv``), in either folder:

- NIfTI (``.nii``/``.nii.gz``): voxel data (exactly, same dtype) and affine (exactly);
  the number of differing voxels is printed when they differ;
- TSV: the same bytes; else the differing columns (numbers read as float64, compared
  exactly), or "same values" when only the text of the numbers differs (still counted);
- JSON: equal after dropping the keys that change from run to run (``Config.run_uuid``,
  ``SourceFile.mtime_ns`` when the dataset was regenerated, ``Config.work_dir``...): the
  differing top-level keys are listed;
- other files (figures, reports): same bytes or not (reported, not counted as failures).

Exits 0 when every label map and table is equal (``same``), 1 otherwise. Prints one
line per file: ``same``, ``DIFFERENT: ...``, ``only in before`` / ``only in after``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

#: Sidecar keys whose values depend on the run (paths, ids, dates), not on the results.
VOLATILE_KEYS = {"Config", "SourceFile", "Version"}


def _nifti(a: Path, b: Path) -> str:
    ia, ib = nib.load(a), nib.load(b)
    da, db = np.asanyarray(ia.dataobj), np.asanyarray(ib.dataobj)
    problems = []
    if da.shape != db.shape:
        return f"shape {da.shape} vs {db.shape}"
    if da.dtype != db.dtype:
        problems.append(f"dtype {da.dtype} vs {db.dtype}")
    if not np.array_equal(ia.affine, ib.affine):
        problems.append(f"affine differs by up to {np.abs(ia.affine - ib.affine).max():.3g}")
    if not np.array_equal(da, db):
        problems.append(f"{int((da != db).sum())} of {da.size} voxels differ (max |diff| "
                        f"{float(np.abs(da.astype(np.float64) - db.astype(np.float64)).max()):.3g})")
    return "; ".join(problems)


def _tsv(a: Path, b: Path) -> str:
    if a.read_bytes() == b.read_bytes():
        return ""
    ta = pd.read_csv(a, sep="\t", na_values="n/a", keep_default_na=False)
    tb = pd.read_csv(b, sep="\t", na_values="n/a", keep_default_na=False)
    if list(ta.columns) != list(tb.columns):
        only_a, only_b = sorted(set(ta.columns) - set(tb.columns)), sorted(set(tb.columns) - set(ta.columns))
        return f"columns differ (only before: {only_a[:5]}, only after: {only_b[:5]}, order changed: " \
               f"{not only_a and not only_b})"
    if ta.shape != tb.shape:
        return f"shape {ta.shape} vs {tb.shape}"
    # same values, other text (number formats): reported, not counted as equal
    bad = [c for c in ta.columns if not ta[c].astype(str).equals(tb[c].astype(str))
           and not (pd.api.types.is_numeric_dtype(ta[c]) and pd.api.types.is_numeric_dtype(tb[c])
                    and np.array_equal(ta[c].to_numpy(np.float64), tb[c].to_numpy(np.float64), equal_nan=True))]
    return f"values differ in {len(bad)} column(s): {bad[:5]}" if bad else "same values, bytes differ (number format)"


def _json(a: Path, b: Path) -> str:
    ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
    if not (isinstance(ja, dict) and isinstance(jb, dict)):
        return "" if ja == jb else "content differs"
    keys = sorted(k for k in set(ja) | set(jb) if k not in VOLATILE_KEYS and ja.get(k) != jb.get(k))
    return f"keys differ: {keys}" if keys else ""


def compare(before: Path, after: Path) -> tuple[list[str], int]:
    """Lines of the comparison and the number of label maps/tables that differ."""
    def files(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*")
                if p.is_file() and (p.relative_to(root).parts[0].startswith("sub-") or p.name == "dseg.tsv")
                and not p.name.startswith(".")}

    names_a, names_b = files(before), files(after)
    lines, failures = [], 0
    for name in sorted(names_a | names_b):
        counted = name.endswith((".nii", ".nii.gz", ".tsv"))
        if name not in names_b or name not in names_a:
            lines.append(f"{name}: only in {'before' if name in names_a else 'after'}")
            failures += counted
            continue
        a, b = before / name, after / name
        if name.endswith((".nii", ".nii.gz")):
            problem = _nifti(a, b)
        elif name.endswith(".tsv"):
            problem = _tsv(a, b)
        elif name.endswith(".json"):
            problem = _json(a, b)
        else:
            problem = "" if a.read_bytes() == b.read_bytes() else "bytes differ"
        lines.append(f"{name}: {'DIFFERENT: ' + problem if problem else 'same'}")
        failures += bool(problem) and counted
    return lines, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    lines, failures = compare(args.before, args.after)
    print("\n".join(lines))
    n = sum(1 for ln in lines if ln.split(":")[0].endswith((".nii", ".nii.gz", ".tsv")))
    print(f"{n - failures}/{n} label maps and tables equal" + ("" if failures else " (byte-for-byte data)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
