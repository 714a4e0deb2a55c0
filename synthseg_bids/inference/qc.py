"""Automatic quality control of a segmentation from its own posteriors.

There is no separate QC network (SynthSeg 2.0 has one); the scores are computed for the
structure groups of SynthSeg's QC (left and right merged), on the model's grid:

- ``confidence``: mean, over the voxels labelled as the group, of the largest posterior
  (1: the network is certain everywhere; low values mean a poorly resolved structure);
- ``flip dice``: Dice overlap of the group between the segmentation of the scan and that
  of the left/right-flipped scan (flipped back, channels swapped), available with flip
  augmentation. A robust segmentation does not depend on the flip.

Every group has every score (stable CSV columns across scans); a group absent from the
segmentation(s) scores NaN and is not flagged. A group is flagged when a score is below
its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.labels import LabelTable

__all__ = ["QC_GROUPS", "QualityControl", "quality_control", "quality_control_from_counts"]

#: SynthSeg's QC groups: name -> FreeSurfer label values (as ``synthseg_qc_labels_2.0``).
QC_GROUPS: dict[str, tuple[int, ...]] = {
    "general white matter": (2, 41, 11, 50, 26, 58, 28, 60),
    "general grey matter": (3, 42),
    "general csf": (4, 43, 5, 44, 14, 15),
    "cerebellum": (7, 46, 8, 47),
    "brainstem": (16,),
    "thalamus": (10, 49),
    "putamen+pallidum": (12, 51, 13, 52),
    "hippocampus+amygdala": (17, 53, 18, 54),
}


@dataclass(frozen=True)
class QualityControl:
    """QC scores of one segmentation.

    Attributes
    ----------
    scores : dict
        ``"<group> confidence"`` and (with flip augmentation) ``"<group> flip dice"`` ->
        value in [0, 1], NaN for a group absent from the segmentation.
    flag : bool
        Whether any score is below its threshold.
    flagged : tuple of str
        The scores below their threshold.
    thresholds : dict
        ``{"confidence": ..., "flip dice": ...}`` used for flagging.
    """

    scores: dict[str, float]
    flag: bool
    flagged: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)


def _group_index(table: LabelTable) -> np.ndarray:
    """QC group (1-based; 0 = none) of each channel of ``table``."""
    lookup = {v: i + 1 for i, values in enumerate(QC_GROUPS.values()) for v in values}
    return np.array([lookup.get(int(v), 0) for v in table.values], dtype=np.int32)


def quality_control(
    posteriors: np.ndarray,
    table: LabelTable,
    *,
    index: np.ndarray | None = None,
    flipped_index: np.ndarray | None = None,
    unflipped_index: np.ndarray | None = None,
    min_confidence: float = 0.7,
    min_flip_dice: float = 0.8,
) -> QualityControl:
    """QC scores (see module docstring).

    Parameters
    ----------
    posteriors : ndarray, shape (X, Y, Z, K)
        Final posteriors.
    table : LabelTable
        Meaning of the channels.
    index : ndarray of int, shape (X, Y, Z), optional
        ``argmax`` of ``posteriors`` (computed when not given).
    unflipped_index, flipped_index : ndarray of int, shape (X, Y, Z), optional
        Channel argmax of the prediction of the scan and of the flipped scan (flipped
        back, channels swapped); both or neither.
    min_confidence, min_flip_dice : float
        Flagging thresholds.
    """
    n = len(table)
    if index is None:
        index = np.argmax(posteriors, axis=-1)
    index = index.ravel()
    counts = np.bincount(index, minlength=n)
    confidence = np.bincount(index, weights=np.max(posteriors, axis=-1).ravel(), minlength=n)
    if (flipped_index is None) != (unflipped_index is None):
        raise ValueError("give both flipped_index and unflipped_index, or neither")
    joint = None
    if flipped_index is not None:
        pairs = unflipped_index.ravel().astype(np.int64) * n + flipped_index.ravel()
        joint = np.bincount(pairs, minlength=n * n).reshape(n, n)
    return quality_control_from_counts(
        table, counts, confidence, joint, min_confidence=min_confidence, min_flip_dice=min_flip_dice
    )


def quality_control_from_counts(
    table: LabelTable,
    label_counts: np.ndarray,
    label_confidence: np.ndarray,
    flip_joint: np.ndarray | None = None,
    *,
    min_confidence: float = 0.7,
    min_flip_dice: float = 0.8,
) -> QualityControl:
    """QC scores from per-channel summaries (what :func:`quality_control` computes first).

    Parameters
    ----------
    table : LabelTable
    label_counts : ndarray, shape (K,)
        Voxels labelled as each channel.
    label_confidence : ndarray, shape (K,)
        Sum of the largest posterior over the voxels labelled as each channel.
    flip_joint : ndarray of int, shape (K, K), optional
        Voxels labelled ``i`` from the scan and ``j`` from the flipped scan (flipped back,
        channels swapped); flip Dice scores only when given.
    min_confidence, min_flip_dice : float
        Flagging thresholds.
    """
    n_groups = len(QC_GROUPS)
    group_of = _group_index(table)
    counts = np.bincount(group_of, weights=np.asarray(label_counts, dtype=np.float64), minlength=n_groups + 1)
    sums = np.bincount(group_of, weights=np.asarray(label_confidence, dtype=np.float64), minlength=n_groups + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = sums / counts
    scores: dict[str, float] = {}
    flagged: list[str] = []
    for i, name in enumerate(QC_GROUPS, start=1):
        key = f"{name} confidence"
        scores[key] = float(confidence[i])
        if confidence[i] < min_confidence:  # False for NaN
            flagged.append(key)
    if flip_joint is not None:
        one_hot = np.eye(n_groups + 1, dtype=np.int64)[group_of]  # (K, groups)
        joint = one_hot.T @ np.asarray(flip_joint, dtype=np.int64) @ one_hot
        size_a, size_b, both = joint.sum(axis=1), joint.sum(axis=0), np.diag(joint)
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = 2.0 * both / (size_a + size_b)
        for i, name in enumerate(QC_GROUPS, start=1):
            key = f"{name} flip dice"
            scores[key] = float(dice[i])
            if dice[i] < min_flip_dice:
                flagged.append(key)
    return QualityControl(
        scores=scores,
        flag=bool(flagged),
        flagged=tuple(flagged),
        thresholds={"confidence": float(min_confidence), "flip dice": float(min_flip_dice)},
    )
