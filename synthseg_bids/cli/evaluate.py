"""``synthseg-bids evaluate``: score segmentations against reference label maps.

Writes ``PREFIX_scores.tsv`` (one row per subject, structure and metric),
``PREFIX_summary.tsv`` (per structure count/mean/std/median of each metric) and, with
``--compare``, ``PREFIX_comparison.tsv`` (Wilcoxon signed-rank test of ``--pred`` vs
``--compare`` per structure and metric, corrected across structures), and prints the
mean Dice of each structure.

Bad input prints one line ``synthseg-bids evaluate: error: <path>: <problem>`` on
stderr and exits with status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import pandas as pd

from ..core.evaluation import (
    DEFAULT_STRIP_SUFFIXES,
    compare_methods,
    evaluate_folders,
    metric_names,
    summarize,
    write_evaluation_tables,
)
from ..core.io import ImageError
from ..core.stats import CORRECTIONS
from .arguments import CommandParser

__all__ = ["PROG", "build_parser", "main"]

PROG = "synthseg-bids evaluate"


def _percentile(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be in [0, 100], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``synthseg-bids evaluate``."""
    parser = CommandParser(
        prog=PROG,
        description="Score predicted label maps against references: Dice, Hausdorff distance, "
        "its percentile and mean surface distance (mm) per structure.",
    )
    parser.add_argument("--ref", required=True, metavar="DIR_OR_FILE", help="reference label map(s)")
    parser.add_argument("--pred", required=True, metavar="DIR_OR_FILE", help="predicted label map(s)")
    parser.add_argument(
        "--out", required=True, metavar="PREFIX", help="output prefix (PREFIX_scores.tsv, PREFIX_summary.tsv)"
    )
    parser.add_argument(
        "--labels", type=int, nargs="+", metavar="VALUE",
        help="label values to score (default: the 32 SynthSeg structures, background excluded)",
    )
    parser.add_argument(
        "--percentile", type=_percentile, default=95.0, help="Hausdorff distance percentile (default: 95)"
    )
    parser.add_argument(
        "--strip-suffix", action="append", metavar="SUFFIX",
        help="name ending ignored when pairing non-BIDS file names (repeatable; "
        f"default: {' '.join(DEFAULT_STRIP_SUFFIXES)})",
    )
    parser.add_argument(
        "--compare", metavar="DIR_OR_FILE",
        help="a second method's predictions: test --pred against them (paired Wilcoxon)",
    )
    parser.add_argument(
        "--correction", choices=sorted(CORRECTIONS), default="holm",
        help="multiple-comparison correction across structures for --compare (default: holm)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 success, 1 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.labels is not None and len(set(args.labels)) != len(args.labels):
        parser.error(f"argument --labels: duplicate values in {args.labels}")
    suffixes = tuple(args.strip_suffix) if args.strip_suffix else DEFAULT_STRIP_SUFFIXES
    # warnings of the evaluation (e.g. label values not in the table): one line each on stderr
    # once the tables are written (a failed run prints its one error line only)
    handler = _Collect()
    logger = logging.getLogger("synthseg_bids.evaluation")
    logger.addHandler(handler)
    try:
        code = _run(args, suffixes)
    finally:
        logger.removeHandler(handler)
    if code == 0:
        for message in dict.fromkeys(handler.messages):
            print(f"{PROG}: warning: {message}", file=sys.stderr)
    return code


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _run(args: argparse.Namespace, suffixes: tuple[str, ...]) -> int:
    from ..bids import match_key

    options = dict(labels=args.labels, percentile=args.percentile,
                   key=lambda path: match_key(path, strip_suffixes=suffixes))
    try:
        scores = evaluate_folders(args.ref, args.pred, **options)
        comparison = None
        if args.compare:
            other = evaluate_folders(args.ref, args.compare, **options)
            comparison = pd.concat(
                [compare_methods(scores, other, m, correction=args.correction) for m in metric_names(args.percentile)],
                ignore_index=True,
            )
        write_evaluation_tables(scores, args.out, comparison)
    except ImageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"{PROG}: error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 1
    summary = summarize(scores)[["structure", "label", "dice_n", "dice_mean", "dice_std"]]
    n_subjects = scores["subject"].nunique()
    print(f"Mean Dice over {n_subjects} subject(s):")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
    return 0
