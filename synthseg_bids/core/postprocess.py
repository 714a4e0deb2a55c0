"""Topological post-processing (SynthSeg's connected-component cleaning): the masks' step.

A structure is one connected piece of tissue: voxels of a structure that are not
connected to its main body are network errors (e.g. a "hippocampus" blob in the
cerebellum). The prediction (:mod:`synthseg_bids.inference.prediction`) removes them:

1. *brain*: the mask where the summed non-background posteriors exceed a threshold is
   reduced to its largest connected component; non-background posteriors outside it are
   set to zero;
2. *groups* (skipped in the fast mode): for each topological group (a set of channels,
   e.g. all left-hemisphere cerebral structures), the mask where any channel of the group
   exceeds the threshold is reduced to its largest connected component and the group's
   posteriors are set to zero outside it;
3. the posteriors are renormalised to sum to one (voxels left with nothing become
   background).

The device computes the compact boolean masks and does steps 1-3 on the posteriors;
:func:`largest_components` is the host's part: each mask reduced to its largest component,
labelled on its own bounding box only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["largest_components"]


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
