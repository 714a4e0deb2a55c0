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

Every group's mask is contained in the brain mask (a channel's posterior is at most the
summed non-background posterior) and is labelled on its own bounding box only
(:func:`largest_components`). The prediction does steps 1-2 on these compact boolean masks
and the rest on its device (:mod:`synthseg_bids.inference.prediction`);
:func:`keep_largest_components` is the same clean-up on a posterior array.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["largest_components", "keep_largest_components", "renormalise"]


def largest_components(
    masks: np.ndarray,
    connectivity: int = 3,
    profiles: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Largest connected component of each of a stack of 3D masks.

    Each mask is labelled (:func:`scipy.ndimage.label`) on its own bounding box only.

    Parameters
    ----------
    masks : ndarray of bool, shape (G, X, Y, Z)
        One mask per group.
    connectivity : int
        1 (faces), 2 (faces and edges) or 3 (faces, edges and corners; SynthSeg's choice).
    profiles : tuple of 3 ndarray of bool, shapes (G, X), (G, Y), (G, Z), optional
        Whether each mask has a voxel in each slice along each axis (computed when not
        given; the device gives them with its masks).

    Returns
    -------
    ndarray of bool, shape (G, X, Y, Z)
        Each mask reduced to its largest component (ties: the component found first in
        raster order); empty masks stay empty.
    """
    masks = np.asarray(masks, dtype=bool)
    if profiles is None:
        profiles = tuple(masks.any(axis=tuple(a for a in (1, 2, 3) if a != axis)) for axis in (1, 2, 3))
    structure = ndimage.generate_binary_structure(3, connectivity)
    out = np.zeros(masks.shape, dtype=bool)
    for g, mask in enumerate(masks):
        spans = [np.flatnonzero(p[g]) for p in profiles]
        if any(span.size == 0 for span in spans):
            continue
        box = tuple(slice(span[0], span[-1] + 1) for span in spans)
        crop = mask[box]
        labelled, n = ndimage.label(crop, structure=structure)
        if n <= 1:
            out[g][box] = crop
            continue
        sizes = np.bincount(labelled.ravel(), minlength=n + 1)
        sizes[0] = 0
        out[g][box] = labelled == np.argmax(sizes)  # first of the largest: lowest label, raster order
    return out


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
