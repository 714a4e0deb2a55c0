"""Topological post-processing of posteriors (SynthSeg's connected-component cleaning).

A structure is one connected piece of tissue: voxels of a structure that are not
connected to its main body are network errors (e.g. a "hippocampus" blob in the
cerebellum). :func:`keep_largest_components` removes them on the posteriors:

1. *brain*: the mask where the summed non-background posteriors exceed ``threshold`` is
   reduced to its largest connected component; non-background posteriors outside it are
   set to zero;
2. *groups* (skipped with ``brain_only``): for each topological group ``g > 0`` (a set of
   channels, e.g. all left-hemisphere cerebral structures), the mask where any channel
   of the group exceeds ``threshold`` is reduced to its largest connected component and
   the group's posteriors are set to zero outside it;
3. the posteriors are renormalised to sum to one (voxels left with nothing become
   background).

All groups are labelled by one :func:`scipy.ndimage.label` call on a stacked
``(G, X, Y, Z)`` mask whose structuring element does not connect different groups, on
the bounding box of the brain only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["largest_components", "keep_largest_components", "renormalise"]


def largest_components(masks: np.ndarray, connectivity: int = 3) -> np.ndarray:
    """Largest connected component of each of a stack of 3D masks.

    Parameters
    ----------
    masks : ndarray of bool, shape (G, X, Y, Z)
        One mask per group.
    connectivity : int
        1 (faces), 2 (faces and edges) or 3 (faces, edges and corners; SynthSeg's choice).

    Returns
    -------
    ndarray of bool, shape (G, X, Y, Z)
        Each mask reduced to its largest component (ties: the component found first);
        empty masks stay empty.
    """
    masks = np.asarray(masks, dtype=bool)
    spatial = ndimage.generate_binary_structure(3, connectivity)
    structure = np.zeros((3, 3, 3, 3), dtype=bool)
    structure[1] = spatial  # no connection between groups
    labelled, n = ndimage.label(masks, structure=structure)
    if n == 0:
        return masks.copy()
    sizes = np.bincount(labelled.ravel(), minlength=n + 1)
    # Group of each component: components are numbered in raster order, group-major.
    first_voxels = ndimage.find_objects(labelled)
    group_of = np.array([s[0].start for s in first_voxels])
    order = np.lexsort((-sizes[1:], group_of))  # by group, then largest first
    first_of_group = np.r_[True, group_of[order][1:] != group_of[order][:-1]]
    keep = np.zeros(n + 1, dtype=bool)
    keep[order[first_of_group] + 1] = True
    return keep[labelled]


def renormalise(posteriors: np.ndarray, background: int = 0) -> np.ndarray:
    """Divide posteriors by their sum over channels, in place; all-zero voxels become background.

    Parameters
    ----------
    posteriors : ndarray, float, shape (..., K)

    Returns
    -------
    ndarray
        ``posteriors`` (modified in place).
    """
    total = posteriors.sum(axis=-1)
    empty = total <= 0
    if np.any(empty):
        posteriors[empty, background] = 1.0
        total[empty] = 1.0
    posteriors /= total[..., None]
    return posteriors


def keep_largest_components(
    posteriors: np.ndarray,
    groups: np.ndarray,
    *,
    threshold: float = 0.25,
    brain_only: bool = False,
    background: int = 0,
    connectivity: int = 3,
) -> np.ndarray:
    """Zero posteriors outside the largest component of the brain and of each group, renormalise.

    Parameters
    ----------
    posteriors : ndarray, float32, shape (X, Y, Z, K)
        Class probabilities; modified in place and returned.
    groups : ndarray of int, shape (K,)
        Topological group of each channel (0: not cleaned by group, e.g. background, CSF);
        :attr:`synthseg_bids.core.labels.LabelTable.groups`.
    threshold : float
        A voxel belongs to a mask when its (summed) posterior exceeds this (SynthSeg: 0.25).
    brain_only : bool
        Only clean the whole-brain mask (step 1, the "fast" mode).
    background : int
        Channel of the background class.
    connectivity : int
        See :func:`largest_components`.

    Returns
    -------
    ndarray
        ``posteriors``, cleaned and renormalised.
    """
    groups = np.asarray(groups)
    if posteriors.ndim != 4 or groups.shape != (posteriors.shape[3],):
        raise ValueError(f"posteriors (X, Y, Z, K) and groups (K,) do not match: {posteriors.shape}, {groups.shape}")
    foreground = np.arange(posteriors.shape[3]) != background
    brain = posteriors[..., foreground].sum(axis=-1) > threshold
    if not brain.any():
        return renormalise(posteriors, background)
    box = ndimage.find_objects(brain.astype(np.uint8))[0]
    post = posteriors[box]  # a view: changes go to ``posteriors``
    brain = brain[box]
    group_ids = np.unique(groups[(groups > 0) & foreground]) if not brain_only else np.array([], int)
    masks = np.empty((1 + group_ids.size,) + brain.shape, dtype=bool)
    masks[0] = brain
    if group_ids.size:
        # One array op: the max posterior of each group's channels, then the threshold.
        order = np.argsort(groups, kind="stable")
        sorted_groups = groups[order]
        member = np.isin(sorted_groups, group_ids)
        starts = np.searchsorted(sorted_groups[member], group_ids)
        group_max = np.maximum.reduceat(post[..., order[member]], starts, axis=-1)
        masks[1:] = np.moveaxis(group_max > threshold, -1, 0)
    kept = largest_components(masks, connectivity)
    # keep[..., c]: whether channel c survives at each voxel.
    in_group = np.isin(groups, group_ids) & foreground
    column = np.where(in_group, np.searchsorted(group_ids, groups) + 1, 0)  # 0: brain mask only
    kept_channels = np.moveaxis(kept, 0, -1)[..., column]
    kept_channels[..., ~foreground] = True
    if group_ids.size:
        kept_channels[..., foreground] &= kept[0][..., None]
    post *= kept_channels
    for axis, span in enumerate(box):  # outside the brain's box: background only
        for part in (slice(0, span.start), slice(span.stop, None)):
            index = [slice(None)] * 3
            index[axis] = part
            posteriors[tuple(index) + (foreground,)] = 0.0
    return renormalise(posteriors, background)
