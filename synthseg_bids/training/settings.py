"""Settings of the training loops (stored in model files and checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.settings import Settings, SettingsError
from ..network.settings import DTYPE_POLICIES
from .losses import LOSSES

__all__ = ["AugmentationSettings", "TrainingSettings"]

_JIT = ("auto", "on", "off")
_SAVE_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class TrainingSettings(Settings):
    """Optimisation schedule (defaults: SynthSeg's tutorial schedule, 1000-step epochs).

    Attributes
    ----------
    epochs : int
        Total epochs, the weighted-L2 warm-up included.
    wl2_epochs : int
        First epochs trained with the weighted-L2 loss on the logits (SynthSeg's warm-up);
        the optimiser is restarted when the main loss takes over, as in the original.
    steps_per_epoch : int
        Optimiser steps per epoch (one checkpoint per ``checkpoint_every`` epochs).
    batch_size : int
        Label maps (synthetic) or image crops (supervised) per step. SynthSeg: 1.
    learning_rate : float
        Adam learning rate. SynthSeg: 1e-4.
    lr_decay : float
        Inverse-time decay: ``lr / (1 + lr_decay * e)`` with ``e`` the epochs completed in
        the current phase (0: constant, as SynthSeg).
    loss : str
        Main loss after the warm-up: 'dice' (SynthSeg), 'cross_entropy' or
        'dice+cross_entropy' (see :mod:`synthseg_bids.training.losses`).
    class_weights : tuple of float or None
        Per-label weights of the cross-entropy (``None``: all 1).
    wl2_target : float
        Target logit magnitude of the warm-up loss. SynthSeg: 5.
    seed : int
        Seeds the weight initialisation, the host choice of label maps and the
        generator's random stream.
    checkpoint_every : int
        Save ``checkpoints/epoch_NNNN.npz`` every this many epochs (and after the last).
    keep_checkpoints : int
        Keep only the newest this many checkpoints (0: keep all, needed to validate them all).
    jit_compile : str
        'auto' (Keras decides; XLA on JAX), 'on' or 'off'.
    mixed_precision : str
        'float32', 'mixed_bfloat16' or 'mixed_float16' (loss scaling added) compute policy
        of the U-Net; the generator, the softmax and the losses stay float32.
    save_dtype : str
        Storage of the final ``model.npz`` weights: 'float32' or 'float16' (half the size).
    batch_norm_images : int
        After the last epoch, recompute the batch-normalisation statistics used at inference
        as the mean over this many synthetic images of each image's statistics, the weights
        fixed (:mod:`synthseg_bids.training.batch_norm`); 0: keep the running averages of
        training. Synthetic training only.
    batch_norm_shape : tuple of 3 int or None
        Size of those images (``None``: the generator's ``output_shape``). Larger than the
        training crops when the crops were made small for speed: the statistics should
        describe images like those segmented later.
    average_last : int
        After the last epoch, set the weights to their mean over the checkpoints of the last
        this many epochs (:mod:`synthseg_bids.training.averaging`), before the
        batch-normalisation statistics are recomputed; 0 or 1: the last epoch's weights.
        Needs a checkpoint after each of those epochs, all in the main phase.
    """

    epochs: int = 505
    wl2_epochs: int = 5
    steps_per_epoch: int = 1000
    batch_size: int = 1
    learning_rate: float = 1e-4
    lr_decay: float = 0.0
    loss: str = "dice"
    class_weights: tuple[float, ...] | None = None
    wl2_target: float = 5.0
    seed: int = 0
    checkpoint_every: int = 1
    keep_checkpoints: int = 0
    jit_compile: str = "auto"
    mixed_precision: str = "float32"
    save_dtype: str = "float32"
    batch_norm_images: int = 0
    batch_norm_shape: tuple[int, int, int] | None = None
    average_last: int = 0

    def validate(self) -> None:
        self.check_at_least(1, "epochs", "steps_per_epoch", "batch_size", "checkpoint_every")
        self.check_at_least(0, "lr_decay", "keep_checkpoints", "batch_norm_images", "average_last")
        self.check_shape("batch_norm_shape")
        if not 0 <= self.wl2_epochs <= self.epochs:
            raise SettingsError(f"wl2_epochs must be in 0..epochs ({self.epochs}), got {self.wl2_epochs}")
        if not self.learning_rate > 0:
            raise SettingsError(f"learning_rate must be > 0, got {self.learning_rate}")
        self.check_one_of("loss", LOSSES)
        if self.class_weights is not None and any(not w >= 0 for w in self.class_weights):
            raise SettingsError("class_weights must be >= 0")
        if not self.wl2_target > 0:
            raise SettingsError(f"wl2_target must be > 0, got {self.wl2_target}")
        self.check_one_of("jit_compile", _JIT)
        self.check_one_of("mixed_precision", DTYPE_POLICIES)
        self.check_one_of("save_dtype", _SAVE_DTYPES)
        if self.average_last > 1:
            if self.checkpoint_every != 1:
                raise SettingsError(f"average_last needs a checkpoint every epoch, got checkpoint_every = "
                                    f"{self.checkpoint_every}")
            if 0 < self.keep_checkpoints < self.average_last:
                raise SettingsError(f"average_last ({self.average_last}) needs keep_checkpoints = 0 or at least "
                                    f"{self.average_last}, got {self.keep_checkpoints}")
            if self.average_last > self.epochs - self.wl2_epochs:
                raise SettingsError(f"average_last ({self.average_last}) exceeds the epochs of the main phase "
                                    f"({self.epochs - self.wl2_epochs})")

    def phase_of(self, epoch: int) -> str:
        """'wl2' or 'main' for the 0-based ``epoch``."""
        return "wl2" if epoch < self.wl2_epochs else "main"

    @property
    def keras_jit_compile(self) -> bool | str:
        """The value for ``keras.Model.compile(jit_compile=...)``."""
        return {"auto": "auto", "on": True, "off": False}[self.jit_compile]


@dataclass(frozen=True)
class AugmentationSettings(Settings):
    """Light augmentation and cropping for supervised training on real images.

    Attributes
    ----------
    crop_shape : tuple of 3 int
        Random crop size (each a multiple of the network's ``2 ** (n_levels - 1)``);
        smaller images are zero-padded.
    flip : bool
        Random left-right flip (array axis 0 after reorientation to RAS) with the left
        and right labels swapped.
    intensity_scale_std : float
        Standard deviation of the log of a random intensity factor.
    gamma_std : float
        Standard deviation of the log of a random gamma exponent (on [0, 1] intensities).
    unknown_labels : str
        Label values not in the label table: 'error' (default) or 'background'.
        Values listed in ``core.labels.EXTRA_LABEL_MERGES`` are always merged.
    """

    crop_shape: tuple[int, int, int] = (160, 160, 160)
    flip: bool = True
    intensity_scale_std: float = 0.1
    gamma_std: float = 0.2
    unknown_labels: str = "error"

    def validate(self) -> None:
        self.check_shape("crop_shape")
        if self.intensity_scale_std < 0 or self.gamma_std < 0:
            raise SettingsError("intensity_scale_std and gamma_std must be >= 0")
        if self.unknown_labels not in ("error", "background"):
            raise SettingsError(f"unknown_labels must be 'error' or 'background', got {self.unknown_labels!r}")
