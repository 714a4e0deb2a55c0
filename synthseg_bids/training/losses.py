"""Segmentation losses in backend-agnostic ``keras.ops`` (TensorFlow and JAX).

Each function takes ``target`` (one-hot, shape ``(B, X, Y, Z, K)``) and the network
output (posteriors or logits, same shape), computes in float32 whatever the input dtype
(mixed precision), and returns one loss per batch element, shape ``(B,)``; the trainers
average over the batch.

Definitions
-----------
Soft Dice (as SynthSeg's ``ext/lab2im/layers.py:DiceLoss`` with default arguments)::

    dice_bk = (2 * sum_v y_bvk p_bvk + eps) / (sum_v y_bvk^2 + sum_v p_bvk^2 + eps)
    loss_b  = mean_k (1 - dice_bk)

with ``eps = 1e-7`` (Keras' epsilon). A label absent from both the target and the
prediction of a sample scores dice = 1 (no loss). The original renormalises both inputs
to sum to 1 over channels first; for one-hot targets and softmax outputs this is the
identity, so it is left out. For batch size 1 (SynthSeg's setting) the original's mean
over (batch, labels) equals ours.

Weighted L2 (SynthSeg's ``WeightedL2Loss``, warm-up on the pre-softmax logits ``z``)::

    w_bv   = 1 - y_bv0 + 1e-8                       (background voxels ~ ignored)
    loss_b = sum_vk w_bv (z_bvk - t (2 y_bvk - 1))^2 / (K * sum_v w_bv)

with target value ``t = 5``: logits are pushed to +5 for the true label and -5 for the
others, which gives the softmax a sensible starting point. The original normalises over
the whole batch at once; we normalise per sample (identical for batch size 1). On a
crop with no foreground the weights are all equal and the loss is the unweighted mean
(it is computed in a form that stays finite under graph compilation, see the code).

Weighted cross-entropy::

    loss_b = - mean_v sum_k c_k y_bvk log(clip(p_bvk, eps, 1))

with optional per-label weights ``c`` (default 1).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

__all__ = [
    "EPSILON",
    "LOSSES",
    "WL2_BACKGROUND_WEIGHT",
    "combined_loss",
    "make_loss",
    "soft_dice_loss",
    "weighted_cross_entropy",
    "weighted_l2_loss",
]

#: Smoothing constant of the Dice ratio and clipping floor of the cross-entropy.
EPSILON = 1e-7
#: Weight of background voxels in the weighted-L2 loss (foreground voxels weigh 1 + this).
WL2_BACKGROUND_WEIGHT = 1e-8
#: Names accepted by :func:`make_loss` (``TrainingSettings.loss``).
LOSSES = ("dice", "cross_entropy", "dice+cross_entropy")


def soft_dice_loss(target: Any, posteriors: Any) -> Any:
    """Soft Dice loss per sample (see module docstring), shape ``(B,)``."""
    from keras import ops

    y = ops.cast(target, "float32")
    p = ops.cast(posteriors, "float32")
    axes = tuple(range(1, len(y.shape) - 1))
    top = 2.0 * ops.sum(y * p, axis=axes)
    bottom = ops.sum(ops.square(y), axis=axes) + ops.sum(ops.square(p), axis=axes)
    dice = (top + EPSILON) / (bottom + EPSILON)
    return ops.mean(1.0 - dice, axis=-1)


def weighted_l2_loss(target: Any, logits: Any, target_value: float = 5.0) -> Any:
    """SynthSeg's weighted L2 warm-up loss on logits per sample, shape ``(B,)``."""
    from keras import ops

    y = ops.cast(target, "float32")
    z = ops.cast(logits, "float32")
    n_labels = y.shape[-1]
    axes = tuple(range(1, len(y.shape) - 1))
    # w = 1 - y0 + 1e-8 is expanded: as one expression, graph compilers (TensorFlow's
    # constant folding, XLA) fold it into (1 + 1e-8) - y0, and 1 + 1e-8 == 1 in float32,
    # so every weight of an all-background crop became 0 and the loss 0 / 0 = NaN.
    foreground = 1.0 - y[..., 0]
    squared = ops.sum(ops.square(z - target_value * (2.0 * y - 1.0)), axis=-1)
    numerator = ops.mean(foreground * squared, axis=axes) + WL2_BACKGROUND_WEIGHT * ops.mean(squared, axis=axes)
    return numerator / ((ops.mean(foreground, axis=axes) + WL2_BACKGROUND_WEIGHT) * n_labels)


def weighted_cross_entropy(target: Any, posteriors: Any, class_weights: Sequence[float] | None = None) -> Any:
    """Voxel-averaged (optionally label-weighted) cross-entropy per sample, shape ``(B,)``."""
    from keras import ops

    y = ops.cast(target, "float32")
    p = ops.clip(ops.cast(posteriors, "float32"), EPSILON, 1.0)
    terms = y * ops.log(p)
    if class_weights is not None:
        terms = terms * ops.convert_to_tensor([float(c) for c in class_weights], dtype="float32")
    axes = tuple(range(1, len(y.shape) - 1))
    return -ops.mean(ops.sum(terms, axis=-1), axis=axes)


def combined_loss(target: Any, posteriors: Any, class_weights: Sequence[float] | None = None) -> Any:
    """Soft Dice + weighted cross-entropy per sample, shape ``(B,)``."""
    return soft_dice_loss(target, posteriors) + weighted_cross_entropy(target, posteriors, class_weights)


def make_loss(name: str, class_weights: Sequence[float] | None = None) -> Callable[[Any, Any], Any]:
    """The loss ``f(target, posteriors) -> (B,)`` called ``name`` (one of :data:`LOSSES`)."""
    if name == "dice":
        return soft_dice_loss
    if name == "cross_entropy":
        return lambda target, posteriors: weighted_cross_entropy(target, posteriors, class_weights)
    if name == "dice+cross_entropy":
        return lambda target, posteriors: combined_loss(target, posteriors, class_weights)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
