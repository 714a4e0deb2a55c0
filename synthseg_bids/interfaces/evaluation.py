"""Evaluation against reference segmentations and paired comparison of two methods.

Thin wrappers over :mod:`synthseg_bids.core.evaluation` (pairing, Dice, surface
distances, summary tables, :func:`~synthseg_bids.core.evaluation.compare_methods`).

Pairing: :func:`~synthseg_bids.core.evaluation.pair_label_maps` with the BIDS layer's
keys: a prediction is paired with the reference of the same acquisition
(:func:`synthseg_bids.bids.match_key`: ``sub``/``ses``/``acq``/``run``); its row key
(``subject`` column, :func:`synthseg_bids.bids.scan_key`) also carries the contrast it
was computed from (``sub-01_ses-1_T2w``), so the T1w and T2w segmentations of one
session are scored separately against the same reference.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..bids import match_key, scan_key
from ..core.evaluation import compare_methods, evaluate_pair, pair_label_maps, summarize
from ..core.io import IMAGE_SUFFIXES, ImageError, write_table
from ..core.labels import default_label_table

__all__ = ["CompareMethods", "EvaluateSegmentations", "evaluate_predictions", "label_maps_in", "row_key"]

LOGGER = logging.getLogger("synthseg_bids.interfaces")

#: Raw contrasts recognised in file names of other methods' outputs.
KNOWN_CONTRASTS = ("T1w", "T2w", "FLAIR", "PDw", "T2starw", "PD", "T1map", "T2map", "UNIT1", "inplaneT1",
                   "inplaneT2", "angio")


def row_key(path: str | Path) -> str:
    """Row key of a scored prediction: :func:`synthseg_bids.bids.scan_key` knowing other tools' contrasts."""
    return scan_key(path, KNOWN_CONTRASTS)


def label_maps_in(folder: str | Path) -> list[Path]:
    """Label map files under ``folder`` (recursive; hidden files and posteriors left out)."""
    files = [p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")
             and p.name.endswith(IMAGE_SUFFIXES) and "probseg" not in p.name]
    return sorted(files)


def evaluate_predictions(
    predictions: Sequence[str | Path],
    reference_dir: str | Path,
    *,
    labels: Sequence[int] | None = None,
    percentile: float = 95.0,
) -> pd.DataFrame:
    """Tidy score table of every prediction that has a reference on its grid.

    Predictions without a reference, or whose grid (shape/affine) differs from it, are
    logged and skipped; no scored prediction at all is an error.
    """
    table = default_label_table()
    labels = list(labels) if labels else table.values[table.values != 0].tolist()
    pairs = pair_label_maps(label_maps_in(reference_dir), predictions, key=match_key, row_key=row_key,
                            strict=False, reference_root=reference_dir)
    frames = []
    for pair in pairs:
        try:
            frames.append(evaluate_pair(pair, labels, percentile=percentile, label_table=table))
        except ImageError as err:  # e.g. a T2w on another grid than the reference drawn on the T1w
            LOGGER.warning("not scored: %s", err)
    if not frames:
        raise ValueError(f"no prediction has a reference segmentation in {reference_dir}")
    return pd.concat(frames, ignore_index=True)


class _EvaluateInputSpec(BaseInterfaceInputSpec):
    predictions = InputMultiObject(File(exists=True), mandatory=True, desc="predicted label maps")
    reference_dir = traits.Directory(exists=True, mandatory=True, desc="folder of reference label maps")
    labels = traits.List(traits.Int, desc="label values to score (default: all but background)")
    percentile = traits.Range(0.0, 100.0, 95.0, usedefault=True, desc="Hausdorff distance percentile")


class _EvaluateOutputSpec(TraitedSpec):
    out_scores = File(exists=True, desc="tidy TSV: subject, structure, label, metric, value")
    out_summary = File(exists=True, desc="per structure: n/mean/std/median of each metric")


class EvaluateSegmentations(SimpleInterface):
    """Score predicted label maps against references (Dice, HD, HD95, mean surface distance)."""

    input_spec = _EvaluateInputSpec
    output_spec = _EvaluateOutputSpec

    def _run_interface(self, runtime):
        scores = evaluate_predictions(self.inputs.predictions, self.inputs.reference_dir,
                                      labels=self.inputs.labels or None, percentile=self.inputs.percentile)
        cwd = Path(runtime.cwd)
        self._results["out_scores"] = str(write_table(cwd / "scores.tsv", scores, float_format="%.6g"))
        self._results["out_summary"] = str(write_table(cwd / "summary.tsv", summarize(scores), float_format="%.6g"))
        return runtime


class _CompareInputSpec(BaseInterfaceInputSpec):
    scores_a = File(exists=True, mandatory=True, desc="tidy scores of method A (this app)")
    scores_b = File(exists=True, mandatory=True, desc="tidy scores of method B")
    metrics = traits.List(traits.Str, ["dice", "hd95", "msd"], usedefault=True, desc="metrics to compare")
    correction = traits.Enum("holm", "fdr_bh", "none", usedefault=True, desc="multiple-comparison correction")
    alpha = traits.Float(0.05, usedefault=True, desc="significance level of the corrected p-values")


class _CompareOutputSpec(TraitedSpec):
    out_table = File(exists=True, desc="per metric and structure: medians, Wilcoxon statistic, p, corrected p, d")


class CompareMethods(SimpleInterface):
    """Paired Wilcoxon signed-rank comparison of two methods, structure by structure."""

    input_spec = _CompareInputSpec
    output_spec = _CompareOutputSpec

    def _run_interface(self, runtime):
        read = lambda f: pd.read_csv(f, sep="\t", na_values="n/a", keep_default_na=False)  # noqa: E731
        a, b = read(self.inputs.scores_a), read(self.inputs.scores_b)
        tables = [
            compare_methods(a, b, metric, correction=self.inputs.correction, alpha=self.inputs.alpha)
            for metric in self.inputs.metrics
            if metric in set(a["metric"])
        ]
        out = Path(runtime.cwd) / "comparison.tsv"
        self._results["out_table"] = str(write_table(out, pd.concat(tables, ignore_index=True), float_format="%.6g"))
        return runtime
