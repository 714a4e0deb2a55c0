"""Statistics against hand-computed values, brute-force procedures and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from synthseg_bids.core.stats import cohens_d_paired, correct_p_values, fdr_bh, holm, paired_comparison

P_VALUES = [0.01, 0.04, 0.03, 0.005]


def test_holm_matches_hand_computed_values():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    np.testing.assert_allclose(holm(P_VALUES), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)


def test_benjamini_hochberg_matches_hand_computed_values():
    # sorted: 0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04
    np.testing.assert_allclose(fdr_bh(P_VALUES), [0.02, 0.04, 0.04, 0.02], rtol=1e-12)


def test_benjamini_hochberg_reproduces_the_published_example():
    """Benjamini & Hochberg (1995, J R Stat Soc B 57:289, section 4.2): 15 p-values of a trial; at q = 0.05
    the procedure rejects the four smallest (Bonferroni rejects three). Adjusted values by hand:
    15 p_(i) / i, then the running minimum from the largest."""
    p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719,
         0.6528, 0.7590, 1.0]
    adjusted = fdr_bh(p[::-1])[::-1]  # input order must not matter
    np.testing.assert_array_equal(adjusted <= 0.05, [True] * 4 + [False] * 11)
    np.testing.assert_allclose(adjusted[:6], [0.0015, 0.003, 0.0095, 0.035625, 0.0603, 0.0298 * 15 / 7], rtol=1e-12)


def holm_rejections(p, alpha):
    """Holm's step-down procedure as written in textbooks."""
    order = np.argsort(p)
    rejected = np.zeros(len(p), bool)
    for rank, index in enumerate(order):
        if p[index] > alpha / (len(p) - rank):
            break
        rejected[index] = True
    return rejected


def bh_rejections(p, alpha):
    """Benjamini-Hochberg: reject the k smallest, k the largest rank with p_(k) <= k alpha / m."""
    order = np.argsort(p)
    k = 0
    for rank in range(1, len(p) + 1):
        if p[order[rank - 1]] <= rank * alpha / len(p):
            k = rank
    rejected = np.zeros(len(p), bool)
    rejected[order[:k]] = True
    return rejected


@pytest.mark.parametrize(("adjust", "procedure"), [(holm, holm_rejections), (fdr_bh, bh_rejections)])
def test_adjusted_p_values_reproduce_the_procedures_rejections(adjust, procedure):
    rng = np.random.default_rng(3)
    for _ in range(30):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 12)) ** 2
        adjusted = adjust(p)
        assert np.all(adjusted >= p - 1e-15)
        for alpha in (0.001, 0.01, 0.05, 0.1):
            np.testing.assert_array_equal(adjusted <= alpha, procedure(p, alpha))


def test_corrections_ignore_nan_and_validate_range():
    np.testing.assert_allclose(holm([0.01, np.nan, 0.04]), [0.02, np.nan, 0.04], rtol=1e-12)
    np.testing.assert_allclose(fdr_bh([np.nan, 0.02, 0.04]), [np.nan, 0.04, 0.04], rtol=1e-12)
    np.testing.assert_array_equal(correct_p_values([0.2, 0.5], "none"), [0.2, 0.5])
    with pytest.raises(ValueError, match="unknown correction"):
        correct_p_values([0.1], "bonferonni")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


def test_cohens_d_closed_forms():
    assert cohens_d_paired([2, 4, 6], [1, 2, 3]) == pytest.approx(2.0)  # differences 1, 2, 3
    assert cohens_d_paired([0, 0, 0], [1, 3, 5]) == pytest.approx(-1.5)  # -(1, 3, 5): mean -3, sd 2
    assert np.isnan(cohens_d_paired([1.0], [0.0]))
    assert np.isnan(cohens_d_paired([1, 2], [1, 2]))
    assert cohens_d_paired([2, 3], [1, 2]) == np.inf


def test_paired_comparison_matches_scipy_wilcoxon_and_closed_form():
    rng = np.random.default_rng(0)
    subjects = [f"sub-{i:02d}" for i in range(12)]
    a = pd.DataFrame(rng.uniform(0.7, 0.9, (12, 3)), index=subjects, columns=["A", "B", "C"])
    b = a + rng.normal([0.0, 0.05, -0.02], 0.02, (12, 3))
    b.loc["sub-03", "C"] = np.nan  # dropped for C only
    b = b.iloc[::-1]  # rows are paired by subject, not by position
    # Structure D: five positive differences with distinct sizes -> exact two-sided p = 2 / 2^5.
    a["D"] = [1, 2, 3, 4, 5.5] + [np.nan] * 7
    b["D"] = 0.0
    table = paired_comparison(a, b, correction="holm", alpha=0.05)

    assert table["structure"].tolist() == ["A", "B", "C", "D"]
    assert table["n"].tolist() == [12, 12, 11, 5]
    for row in table.itertuples():
        x, y = a[row.structure], b.loc[subjects, row.structure]
        keep = x.notna() & y.notna()
        expected = scipy_stats.wilcoxon(x[keep], y[keep])
        assert row.statistic == pytest.approx(expected.statistic)
        assert row.p == pytest.approx(expected.pvalue, rel=1e-12)
        assert row.median_a == pytest.approx(np.median(x[keep]))
        assert row.cohens_d == pytest.approx(np.mean(x[keep] - y[keep]) / np.std(x[keep] - y[keep], ddof=1))
    d_row = table.set_index("structure").loc["D"]
    assert d_row["p"] == pytest.approx(0.0625) and d_row["statistic"] == 0
    np.testing.assert_allclose(table["p_corrected"], holm(table["p"]), rtol=1e-12)
    np.testing.assert_array_equal(table["significant"], table["p_corrected"] < 0.05)
    assert bool(table.set_index("structure").loc["B", "significant"])  # a clear shift of 0.05


def test_paired_comparison_rejects_mismatched_tables():
    a = pd.DataFrame({"A": [1.0, 2.0]}, index=["s1", "s2"])
    with pytest.raises(ValueError, match="different structures"):
        paired_comparison(a, a.rename(columns={"A": "B"}))
    with pytest.raises(ValueError, match="no subject in common"):
        paired_comparison(a, a.rename(index={"s1": "x", "s2": "y"}))
