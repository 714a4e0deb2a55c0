"""Structure volumes in mm^3 from posteriors (soft counts) or label maps (voxel counts).

As SynthSeg, the volume of a structure from posteriors is the sum of its posterior over
all voxels times the voxel volume, which is more precise than counting argmax voxels at
boundaries. The total intracranial volume is the sum over every non-background structure
of the table (CSF included).
"""

from __future__ import annotations

import numpy as np

from .labels import LabelTable

__all__ = [
    "FLAG_TEXT",
    "QC_FORMAT",
    "TOTAL_INTRACRANIAL",
    "VOLUME_FORMAT",
    "voxel_volume",
    "volumes_from_labels",
    "volumes_from_posterior_sums",
    "volumes_from_posteriors",
]

#: Key of the total intracranial volume in the dictionaries returned here.
TOTAL_INTRACRANIAL = "total intracranial"
#: Number formats of the volumes (mm^3, 3 decimals, as ``mri_synthseg`` rounds them) and of the QC
#: scores (4 decimals, as ``mri_synthseg`` writes its QC network's) in every table the package writes.
VOLUME_FORMAT, QC_FORMAT = "%.3f", "%.4f"
#: Text of a QC flag in every table the package writes.
FLAG_TEXT = {True: "true", False: "false"}


def voxel_volume(affine: np.ndarray) -> float:
    """Volume of one voxel in mm^3 (absolute determinant of the affine's linear part)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3])))


def _with_total(per_channel: np.ndarray, table: LabelTable) -> dict[str, float]:
    foreground = table.values != 0
    volumes = {name: float(v) for name, v, fg in zip(table.names, per_channel, foreground) if fg}
    volumes[TOTAL_INTRACRANIAL] = float(per_channel[foreground].sum())
    return volumes


def volumes_from_posteriors(posteriors: np.ndarray, affine: np.ndarray, table: LabelTable) -> dict[str, float]:
    """Volume (mm^3) of each non-background structure from its posterior, plus the total.

    Parameters
    ----------
    posteriors : ndarray, shape (X, Y, Z, K)
        Class probabilities, channel ``k`` being ``table.structures[k]``.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine of the posteriors' grid (gives the voxel volume).
    table : LabelTable

    Returns
    -------
    dict
        ``{structure name: mm^3}`` in channel order (background left out), then
        :data:`TOTAL_INTRACRANIAL`.
    """
    if posteriors.ndim != 4 or posteriors.shape[3] != len(table):
        raise ValueError(f"posteriors of shape {posteriors.shape} do not have the table's {len(table)} channels")
    sums = posteriors.reshape(-1, posteriors.shape[3]).sum(axis=0, dtype=np.float64)
    return volumes_from_posterior_sums(sums, affine, table)


def volumes_from_posterior_sums(sums: np.ndarray, affine: np.ndarray, table: LabelTable) -> dict[str, float]:
    """:func:`volumes_from_posteriors` from each channel's posterior summed over the voxels.

    For a caller that summed the posteriors where they are (e.g. on a GPU, next to the
    network) and kept only the ``K`` sums.
    """
    sums = np.asarray(sums, dtype=np.float64)
    if sums.shape != (len(table),):
        raise ValueError(f"{sums.shape[0] if sums.ndim else 0} posterior sums for the table's {len(table)} channels")
    return _with_total(sums * voxel_volume(affine), table)


def volumes_from_labels(labels: np.ndarray, affine: np.ndarray, table: LabelTable) -> dict[str, float]:
    """Volume (mm^3) of each non-background structure of a label map (voxel count x voxel volume).

    Label values must all be in ``table`` (``ValueError`` otherwise).
    """
    counts = np.bincount(table.index_of(np.asarray(labels).ravel()), minlength=len(table))
    return _with_total(counts * voxel_volume(affine), table)
