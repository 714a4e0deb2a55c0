"""The mean of the weights of a run's last checkpoints ("stochastic weight averaging").

With batch size 1 and a constant learning rate, the weights after each epoch scatter
around a region of low loss rather than settle in it; which image happened to be last
moves them. The mean of the weights of the last few epochs lies nearer the centre of that
region and generalises better than any one of them (Izmailov et al., "Averaging Weights
Leads to Wider Optima and Better Generalization", UAI 2018). The mean of the
batch-normalisation statistics is no statistic of the averaged network, so they are
recomputed afterwards (:mod:`synthseg_bids.training.batch_norm`), as that paper does.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..network.model_file import read_model_file, set_weights_from, weight_keys

__all__ = ["average_weights"]


def average_weights(model: Any, paths: Sequence[str | os.PathLike]) -> int:
    """Set every weight of ``model`` to its mean over the model files ``paths``.

    Each file is checked against ``model`` as when it is loaded (names, shapes, finite
    values; :class:`~synthseg_bids.network.ModelFileError` naming the file otherwise).
    The mean is taken in float64 and assigned as float32. Batch-normalisation statistics
    are averaged like the other weights; recompute them for an exact value.

    Returns
    -------
    int
        The number of files averaged.
    """
    if not paths:
        raise ValueError("no model files to average")
    variables = [variable for _, variable in weight_keys(model)]
    sums = [np.zeros(tuple(v.shape), np.float64) for v in variables]
    for path in paths:
        set_weights_from(read_model_file(path), model)
        for total, variable in zip(sums, variables):
            total += np.asarray(variable, np.float64)
    for total, variable in zip(sums, variables):
        variable.assign((total / len(paths)).astype(np.float32))
    return len(paths)
