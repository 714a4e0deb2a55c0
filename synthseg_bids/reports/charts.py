"""Geometry of the group report's charts (drawn as inline SVG by ``templates/charts.html.j2``).

Plain numbers in, plain dicts out: the template draws them, so a page stays one
self-contained file whose size grows with the number of structures, not of scans
(a row draws a histogram and a box, and only its marked scans as points).
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

__all__ = ["ROW_HEIGHT", "ROW_WIDTH", "distribution_row", "scatter"]

#: Size (CSS pixels) of one distribution row.
ROW_WIDTH, ROW_HEIGHT = 560, 30
_BINS = 40
_PAD = 6


def _scale(low: float, high: float, width: float, pad: float = _PAD):
    """Map [low, high] to [pad, width - pad] (a flat range to the middle)."""
    span = high - low
    if not np.isfinite(span) or span <= 0:
        return lambda v: width / 2
    return lambda v: pad + (float(v) - low) / span * (width - 2 * pad)


def distribution_row(values, marked, *, threshold: float | None = None) -> dict:
    """One scan-distribution row: histogram bars, box (quartiles, median, 1.5 IQR whiskers) and marked points.

    Parameters
    ----------
    values : array-like
        One value per scan (NaN ignored).
    marked : list of dict
        Scans to draw as points: ``{"value", "label", "href"}``.
    threshold : float, optional
        A vertical line (QC threshold), kept inside the axis.
    """
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if not data.size:
        return {"empty": True, "width": ROW_WIDTH, "height": ROW_HEIGHT}
    low, high = float(data.min()), float(data.max())
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    x = _scale(low, high, ROW_WIDTH)
    counts, edges = np.histogram(data, bins=_BINS, range=(low, high) if high > low else None)
    top = max(int(counts.max()), 1)
    bars = [{"x": round(x(a), 1), "w": round(max(x(b) - x(a) - 0.5, 0.5), 1),
             "h": round(counts[i] / top * (ROW_HEIGHT - 4), 1)} for i, (a, b) in enumerate(pairwise(edges))
            if counts[i]]
    q1, median, q3 = np.percentile(data, [25, 50, 75])
    iqr = q3 - q1
    inside = data[(data >= q1 - 1.5 * iqr) & (data <= q3 + 1.5 * iqr)]
    box = {"x1": round(x(q1), 1), "x2": round(x(q3), 1), "median": round(x(median), 1),
           "w1": round(x(inside.min()), 1), "w2": round(x(inside.max()), 1)}
    points = [{**m, "x": round(x(m["value"]), 1)} for m in marked if np.isfinite(m["value"])]
    return {"empty": False, "width": ROW_WIDTH, "height": ROW_HEIGHT, "bars": bars, "box": box, "points": points,
            "low": low, "high": high, "threshold": None if threshold is None else round(x(threshold), 1),
            "n": int(data.size)}


def scatter(x_values, y_values, labels, groups, *, width: int = 300, height: int = 220) -> dict:
    """A scatter plot (one point per scan, ``groups`` picks its colour class): points and axis ranges."""
    xs, ys = np.asarray(x_values, dtype=float), np.asarray(y_values, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    if not keep.any():
        return {"empty": True, "width": width, "height": height}
    pad = 8
    fx = _scale(float(xs[keep].min()), float(xs[keep].max()), width, pad)
    fy = _scale(float(ys[keep].min()), float(ys[keep].max()), height, pad)
    points = [{"x": round(fx(a), 1), "y": round(height - fy(b), 1), "label": label, "group": group}
              for a, b, label, group, k in zip(xs, ys, labels, groups, keep) if k]
    return {"empty": False, "width": width, "height": height, "points": points,
            "x_range": (float(xs[keep].min()), float(xs[keep].max())),
            "y_range": (float(ys[keep].min()), float(ys[keep].max()))}
