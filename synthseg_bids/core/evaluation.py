"""Evaluate folders of predicted label maps against reference label maps.

Pairing: every image file under a folder (searched recursively; hidden files are
skipped) gets a *key* from its name, by a key function the caller chooses. This module
knows no BIDS (core imports no pybids): its default, :func:`match_key`, is the file name
without its image suffix and without a trailing suffix such as ``_synthseg`` or
``_dseg``. Callers with BIDS names pass :func:`synthseg_bids.bids.match_key` (pairs by
the ``sub``/``ses``/``acq``/``run`` entities). A key found twice in one folder, or found
in one folder only, is an error that names the file.

Each pair must share its shape and affine; the voxel sizes of the affine give the
surface distances in mm. Scores (see :mod:`synthseg_bids.core.metrics`): ``dice``,
``hd``, ``hd<percentile>`` (``hd95`` by default) and ``msd``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .io import ImageError, image_suffix, load_label_map, strip_image_suffix, voxel_sizes, write_table
from .labels import LabelTable, default_label_table
from .metrics import dice_scores, surface_distances
from .stats import paired_comparison

LOGGER = logging.getLogger("synthseg_bids.evaluation")

__all__ = [
    "DEFAULT_STRIP_SUFFIXES",
    "LabelMapPair",
    "compare_methods",
    "evaluate_folders",
    "evaluate_pair",
    "match_key",
    "match_label_maps",
    "metric_names",
    "pair_label_maps",
    "summarize",
    "write_evaluation_tables",
]

#: Name endings removed before matching non-BIDS names.
DEFAULT_STRIP_SUFFIXES: tuple[str, ...] = ("_synthseg", "_dseg", "_seg")
#: A pairing key function: label map path -> key.
KeyFunction = Callable[[Path], str]
#: Largest difference allowed between the affines of a pair (mm).
AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class LabelMapPair:
    """A reference and a predicted label map of one subject/acquisition."""

    key: str
    reference: Path
    prediction: Path


def match_key(path: str | os.PathLike, strip_suffixes: Sequence[str] = DEFAULT_STRIP_SUFFIXES) -> str:
    """Key used to pair a file with its counterpart in the other folder (names without BIDS).

    Parameters
    ----------
    path : path-like
        Label map file.
    strip_suffixes : sequence of str
        Endings removed from the name (the first that matches).

    Returns
    -------
    str
        The file name without image suffix and without the first matching ending.

    Examples
    --------
    >>> match_key("case12_synthseg.nii.gz"), match_key("case12.mgz")
    ('case12', 'case12')
    """
    stem = strip_image_suffix(path)
    for suffix in strip_suffixes:
        if suffix and stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _image_files(path: Path) -> list[Path]:
    if not path.exists():
        raise ImageError(path, "file or folder not found")
    if path.is_file():
        return [path]
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and image_suffix(p) and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise ImageError(path, "folder contains no .nii, .nii.gz or .mgz image")
    return files


def pair_label_maps(
    references: Iterable[str | os.PathLike],
    predictions: Iterable[str | os.PathLike],
    *,
    key: KeyFunction | None = None,
    row_key: KeyFunction | None = None,
    strict: bool = True,
    reference_root: str | os.PathLike = "",
    prediction_root: str | os.PathLike = "",
) -> list[LabelMapPair]:
    """Pair reference and predicted label map files by ``key``.

    Parameters
    ----------
    references, predictions : iterable of path-like
        Files. Two references may not share a key; two predictions may share one (a T1w
        and a T2w segmentation of one session) when their ``row_key`` differs.
    key : callable, optional
        File -> pairing key; default :func:`match_key`.
    row_key : callable, optional
        Prediction -> the pair's ``key`` (its rows' ``subject``); default ``key``.
    strict : bool
        Every file must have a counterpart (else :class:`ImageError`); when False,
        predictions without a reference are logged and left out, and references
        without a prediction are ignored.
    reference_root, prediction_root : path-like
        Folders named in the error messages.

    Returns
    -------
    list of LabelMapPair
        Sorted by key.
    """
    key = key or match_key
    row_key = row_key or key
    refs: dict[str, Path] = {}
    for file in map(Path, references):
        found = key(file)
        if found in refs:
            raise ImageError(file, f"has the same match key {found!r} as {refs[found]}")
        refs[found] = file
    pairs: dict[str, LabelMapPair] = {}
    missing: list[tuple[str, Path]] = []
    for file in map(Path, predictions):
        found, row = key(file), row_key(file)
        if row in pairs:
            raise ImageError(file, f"has the same match key {row!r} as {pairs[row].prediction}")
        if found in refs:
            pairs[row] = LabelMapPair(row, refs[found], file)
        else:
            missing.append((found, file))
    unused = sorted(set(refs) - {key(p.prediction) for p in pairs.values()})
    if strict:
        sides = ((missing, reference_root, "reference"),
                 ([(k, refs[k]) for k in unused], prediction_root, "prediction"))
        for lacking, other_root, role in sides:
            if lacking:
                found, file = sorted(lacking)[0]
                more = f" (and {len(lacking) - 1} more file(s) without one)" if len(lacking) > 1 else ""
                raise ImageError(file, f"no {role} with match key {found!r} in {other_root}{more}")
    for found, file in missing:
        LOGGER.warning("%s: no reference segmentation for %s in %s; not scored", file.name, found, reference_root)
    return [pairs[k] for k in sorted(pairs)]


def match_label_maps(
    reference: str | os.PathLike,
    prediction: str | os.PathLike,
    *,
    key: KeyFunction | None = None,
    strip_suffixes: Sequence[str] = DEFAULT_STRIP_SUFFIXES,
) -> list[LabelMapPair]:
    """Pair reference and predicted label maps of two folders (or two files).

    Parameters
    ----------
    reference, prediction : path-like
        A label map file or a folder of them (searched recursively). Two files are
        paired as they are, whatever their names.
    key : callable, optional
        File -> pairing key (e.g. :func:`synthseg_bids.bids.match_key` for BIDS
        names); default :func:`match_key` with ``strip_suffixes``.
    strip_suffixes
        See :func:`match_key`.

    Returns
    -------
    list of LabelMapPair
        Sorted by key.

    Raises
    ------
    ImageError
        A path is missing or has no image; a key appears twice in one folder; a
        file has no counterpart in the other folder.
    """
    reference, prediction = Path(reference), Path(prediction)
    key = key or (lambda path: match_key(path, strip_suffixes))
    ref_files = _image_files(reference)
    pred_files = _image_files(prediction)
    if reference.is_file() and prediction.is_file():
        return [LabelMapPair(key(prediction), reference, prediction)]
    return pair_label_maps(ref_files, pred_files, key=key, reference_root=reference, prediction_root=prediction)


def metric_names(percentile: float = 95.0) -> list[str]:
    """Metric names in table order: ``dice``, ``hd``, ``hd<percentile>``, ``msd``."""
    return ["dice", "hd", f"hd{percentile:g}", "msd"]


def _structure_names(labels: np.ndarray, table: LabelTable) -> list[str]:
    names = {s.value: s.name for s in table}
    return [names.get(int(v), f"label-{int(v)}") for v in labels]


def evaluate_pair(
    pair: LabelMapPair,
    labels: Sequence[int] | np.ndarray,
    *,
    percentile: float = 95.0,
    label_table: LabelTable | None = None,
) -> pd.DataFrame:
    """Score one predicted label map against its reference.

    Parameters
    ----------
    pair : LabelMapPair
        The two files (same shape and affine).
    labels : sequence of int
        Label values to score.
    percentile : float
        Hausdorff percentile in [0, 100].
    label_table : LabelTable, optional
        Structure names (default: :func:`~synthseg_bids.core.labels.default_label_table`;
        unknown values are named ``label-<value>``).

    Returns
    -------
    pandas.DataFrame
        Tidy table with columns ``subject``, ``structure``, ``label``, ``metric``,
        ``value`` (Dice dimensionless, distances in mm; NaN where undefined).

    Raises
    ------
    ImageError
        A file is unreadable or not a label map, or the two differ in shape or affine.
    """
    reference = load_label_map(pair.reference)
    prediction = load_label_map(pair.prediction)
    if reference.shape != prediction.shape:
        raise ImageError(
            pair.prediction, f"shape {prediction.shape} differs from reference {pair.reference} shape {reference.shape}"
        )
    if not np.allclose(reference.affine, prediction.affine, rtol=0, atol=AFFINE_TOLERANCE_MM):
        difference = float(np.abs(reference.affine - prediction.affine).max())
        raise ImageError(
            pair.prediction, f"affine differs from that of reference {pair.reference} (by up to {difference:.4g} mm)"
        )
    labels = np.asarray(labels, dtype=np.int64)
    known = set((label_table or default_label_table()).values.tolist()) | set(labels.tolist())
    for image in (reference, prediction):
        unexpected = sorted(set(np.unique(image.data).tolist()) - known)
        if unexpected:
            shown = ", ".join(map(str, unexpected[:10])) + (" ..." if len(unexpected) > 10 else "")
            LOGGER.warning("%s: label value(s) %s not in the label table; not scored (score them with --labels)",
                           image.path, shown)
    dice = dice_scores(reference.data, prediction.data, labels)
    distances = surface_distances(
        reference.data, prediction.data, labels, spacing=voxel_sizes(reference.affine), percentile=percentile
    )
    values = np.stack([dice, distances.hd, distances.hd_percentile, distances.msd])
    metrics = metric_names(percentile)
    names = _structure_names(labels, label_table or default_label_table())
    return pd.DataFrame(
        {
            "subject": pair.key,
            "structure": np.tile(names, len(metrics)),
            "label": np.tile(labels, len(metrics)),
            "metric": np.repeat(metrics, labels.size),
            "value": values.ravel(),
        }
    )


def evaluate_folders(
    reference: str | os.PathLike,
    prediction: str | os.PathLike,
    labels: Sequence[int] | None = None,
    *,
    percentile: float = 95.0,
    label_table: LabelTable | None = None,
    key: KeyFunction | None = None,
    strip_suffixes: Sequence[str] = DEFAULT_STRIP_SUFFIXES,
) -> pd.DataFrame:
    """Score every predicted label map against its reference.

    Parameters
    ----------
    reference, prediction : path-like
        Label map files or folders (paired by :func:`match_label_maps`).
    labels : sequence of int, optional
        Label values to score; default: every structure of ``label_table`` except the
        background (0).
    percentile, label_table
        See :func:`evaluate_pair`.
    key, strip_suffixes
        See :func:`match_label_maps`.

    Returns
    -------
    pandas.DataFrame
        Tidy table (``subject``, ``structure``, ``label``, ``metric``, ``value``),
        all pairs concatenated in key order.
    """
    table = label_table or default_label_table()
    if labels is None:
        labels = table.values[table.values != 0]
    pairs = match_label_maps(reference, prediction, key=key, strip_suffixes=strip_suffixes)
    frames = [evaluate_pair(pair, labels, percentile=percentile, label_table=table) for pair in pairs]
    return pd.concat(frames, ignore_index=True)


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """Wide summary: one row per structure, count/mean/std/median of each metric.

    Parameters
    ----------
    scores : pandas.DataFrame
        Tidy table from :func:`evaluate_folders`.

    Returns
    -------
    pandas.DataFrame
        Columns ``structure``, ``label``, then ``<metric>_n`` (subjects with a finite
        value), ``<metric>_mean``, ``<metric>_std`` (ddof=1) and ``<metric>_median``
        for each metric; NaN values are left out of the statistics.
    """
    grouped = scores.groupby(["label", "structure", "metric"], sort=False)["value"]
    stats = grouped.agg(n="count", mean="mean", std="std", median="median")
    wide = stats.unstack("metric")
    metrics = list(dict.fromkeys(scores["metric"]))
    wide = wide.reindex(columns=pd.MultiIndex.from_product([["n", "mean", "std", "median"], metrics]))
    wide = wide.swaplevel(axis=1)[[(m, s) for m in metrics for s in ("n", "mean", "std", "median")]]
    wide.columns = [f"{metric}_{stat}" for metric, stat in wide.columns]
    wide = wide.reset_index()[["structure", "label", *wide.columns]]
    return wide.astype({c: "int64" for c in wide.columns if c.endswith("_n")})


def _output_prefix(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out / "evaluation" if out.is_dir() else out


def write_evaluation_tables(
    scores: pd.DataFrame, out: str | os.PathLike, comparison: pd.DataFrame | None = None
) -> list[Path]:
    """Write the tidy scores, their summary and an optional comparison as TSV, atomically.

    Parameters
    ----------
    scores : pandas.DataFrame
        Tidy table from :func:`evaluate_folders`.
    out : path-like
        Output prefix (``results/run1`` gives ``results/run1_scores.tsv`` and
        ``results/run1_summary.tsv``); an existing folder gets ``evaluation_*.tsv``.
    comparison : pandas.DataFrame, optional
        Table from :func:`compare_methods`, written as ``<prefix>_comparison.tsv``.

    Returns
    -------
    list of Path
        The files written. Missing values are written ``n/a`` (BIDS).
    """
    prefix = _output_prefix(out)
    tables = {"scores": scores, "summary": summarize(scores), "comparison": comparison}
    return [
        write_table(f"{prefix}_{name}.tsv", table)
        for name, table in tables.items()
        if table is not None
    ]


def compare_methods(
    scores_a: pd.DataFrame,
    scores_b: pd.DataFrame,
    metric: str = "dice",
    *,
    correction: str = "holm",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Paired Wilcoxon comparison of two methods' scores, structure by structure.

    Parameters
    ----------
    scores_a, scores_b : pandas.DataFrame
        Tidy tables from :func:`evaluate_folders` of methods A and B (paired by
        ``subject``; only subjects scored by both are used).
    metric : str
        Metric to compare (``dice``, ``hd``, ``hd95``, ``msd``).
    correction, alpha
        See :func:`synthseg_bids.core.stats.paired_comparison`.

    Returns
    -------
    pandas.DataFrame
        :func:`~synthseg_bids.core.stats.paired_comparison`'s table with a leading
        ``metric`` column; ``cohens_d > 0`` when A scores higher.
    """
    wide = []
    for scores in (scores_a, scores_b):
        chosen = scores[scores["metric"] == metric]
        if chosen.empty:
            raise ValueError(f"no {metric!r} scores to compare (metrics: {sorted(set(scores['metric']))})")
        structures = list(dict.fromkeys(chosen["structure"]))  # in table order
        wide.append(chosen.pivot(index="subject", columns="structure", values="value")[structures])
    table = paired_comparison(wide[0], wide[1], correction=correction, alpha=alpha)
    table.insert(0, "metric", metric)
    return table
