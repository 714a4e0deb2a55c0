"""Paired comparison of two segmentation methods, structure by structure.

For each structure the scores of method A and method B on the same subjects are
compared with the Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`, two-sided,
zero differences dropped as in Wilcoxon's original method) and a paired Cohen's d; the
p-values of all structures are then corrected for multiple comparisons (Holm's
step-down method or Benjamini-Hochberg's false discovery rate).

NaN handling: a subject whose score is NaN for either method is left out of that
structure's test (``n`` counts the subjects kept); a structure with no subject left
gets NaN statistics, and corrections count only the finite p-values.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

__all__ = [
    "CORRECTIONS",
    "cohens_d_paired",
    "correct_p_values",
    "fdr_bh",
    "holm",
    "paired_comparison",
]


def cohens_d_paired(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Paired Cohen's d: mean of the differences ``a - b`` over their standard deviation.

    Parameters
    ----------
    a, b : array_like of float, shape (n,)
        Paired scores (same units, e.g. Dice or mm).

    Returns
    -------
    float
        ``mean(a - b) / std(a - b, ddof=1)`` (dimensionless); NaN when ``n < 2`` or
        all differences are 0, +/-inf when all differences are equal and non-zero.
    """
    difference = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if difference.size < 2:
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.mean(difference) / np.std(difference, ddof=1))


def _p_array(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The p-values as a flat float64 array, checked to lie in [0, 1] (NaN allowed)."""
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    return p


def _finite_sorted(p_values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finite p-values in ascending order, their positions, and the NaN output array."""
    p = _p_array(p_values)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    return p[order], order, np.full(p.shape, np.nan)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate).

    With the m finite p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted
    value of ``p_(i)`` is ``min(1, max_{j <= i} (m - j + 1) p_(j))``.

    Takes and returns p-values as :func:`correct_p_values` does.
    """
    p_sorted, order, adjusted = _finite_sorted(p_values)
    m = p_sorted.size
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p_sorted))
    return adjusted


def fdr_bh(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate).

    With the m finite p-values sorted ascending, the adjusted value of ``p_(i)`` is
    ``min(1, min_{j >= i} m p_(j) / j)`` (:func:`scipy.stats.false_discovery_control`).

    Takes and returns p-values as :func:`correct_p_values` does.

    >>> fdr_bh([0.01, 0.04, 0.03, 0.005]).round(6).tolist()
    [0.02, 0.04, 0.04, 0.02]
    """
    p = _p_array(p_values)
    adjusted = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = scipy_stats.false_discovery_control(p[finite], method="bh")
    return adjusted


#: Multiple-comparison corrections by name ("none" keeps the raw p-values).
CORRECTIONS = {
    "holm": holm,
    "fdr_bh": fdr_bh,
    "none": lambda p: np.asarray(p, dtype=np.float64).copy(),
}


def correct_p_values(p_values: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjust p-values with one of :data:`CORRECTIONS` (``holm``, ``fdr_bh``, ``none``).

    Parameters
    ----------
    p_values : array_like of float
        Raw p-values in [0, 1]; NaN entries are ignored and stay NaN.
    method : {'holm', 'fdr_bh', 'none'}
        :func:`holm`, :func:`fdr_bh`, or the raw values (a copy).

    Returns
    -------
    numpy.ndarray of float64
        Adjusted p-values in the input order.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; choose from {sorted(CORRECTIONS)}")
    return CORRECTIONS[method](p_values)


def paired_comparison(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    correction: str = "holm",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Wilcoxon signed-rank test and Cohen's d of method A vs B for every structure.

    Parameters
    ----------
    a, b : pandas.DataFrame
        Scores of the two methods, one row per subject and one column per structure;
        rows are paired by index label and columns by name (both must match).
    correction : {'holm', 'fdr_bh', 'none'}
        Multiple-comparison correction across structures.
    alpha : float
        Significance level applied to the corrected p-values.

    Returns
    -------
    pandas.DataFrame
        One row per structure (column order of ``a``) with columns ``structure``,
        ``n`` (subjects with finite scores for both methods), ``median_a``,
        ``median_b``, ``statistic`` (Wilcoxon's smaller rank sum), ``p``,
        ``p_corrected``, ``cohens_d`` (positive when A scores higher) and
        ``significant`` (``p_corrected < alpha``).
    """
    if set(a.columns) != set(b.columns):
        raise ValueError(f"the two score tables have different structures: {sorted(set(a.columns) ^ set(b.columns))}")
    if not a.index.is_unique or not b.index.is_unique:
        raise ValueError("subjects must appear once in each score table")
    subjects = a.index.intersection(b.index, sort=False)
    if len(subjects) == 0:
        raise ValueError("the two score tables have no subject in common")
    rows = []
    for structure in a.columns:
        x = a.loc[subjects, structure].to_numpy(dtype=np.float64)
        y = b.loc[subjects, structure].to_numpy(dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        statistic = p = np.nan
        if x.size:
            # all-zero differences: scipy returns p = 1 after a 0/0 in its normal approximation
            with np.errstate(invalid="ignore", divide="ignore"):
                test = scipy_stats.wilcoxon(x, y)
            statistic, p = float(test.statistic), float(test.pvalue)
        rows.append(
            {
                "structure": structure,
                "n": int(x.size),
                "median_a": float(np.median(x)) if x.size else np.nan,
                "median_b": float(np.median(y)) if y.size else np.nan,
                "statistic": statistic,
                "p": p,
                "cohens_d": cohens_d_paired(x, y),
            }
        )
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("p") + 1, "p_corrected", correct_p_values(table["p"].to_numpy(), correction))
    table["significant"] = table["p_corrected"] < alpha
    return table
