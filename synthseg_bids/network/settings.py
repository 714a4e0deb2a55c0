"""Settings of the segmentation U-Net (stored in every model file)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.settings import Settings, SettingsError

__all__ = ["ACTIVATIONS", "DTYPE_POLICIES", "NORMALISATIONS", "NetworkSettings"]

#: Activation functions accepted by :class:`NetworkSettings` (Keras names).
ACTIVATIONS = ("elu", "relu", "leaky_relu", "gelu", "silu")
#: Normalisation applied after the convolutions of each level.
NORMALISATIONS = ("batch", "instance", "none")
#: Keras dtype policies accepted by :func:`~synthseg_bids.network.unet.build_unet`.
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclass(frozen=True)
class NetworkSettings(Settings):
    """Architecture of the 3D U-Net (defaults: SynthSeg's network).

    Attributes
    ----------
    n_levels : int
        Resolution levels (max-pooling steps + 1). The spatial input size must be a
        multiple of ``2 ** (n_levels - 1)``. SynthSeg: 5.
    conv_per_level : int
        Convolutions per level in the encoder and the decoder. SynthSeg: 2.
    conv_size : int
        Kernel size (odd) of those convolutions. SynthSeg: 3.
    base_features : int
        Feature maps at the first (full-resolution) level. SynthSeg: 24.
    feature_multiplier : float
        Feature maps are multiplied by this at each level down
        (``round(base_features * feature_multiplier ** level)``). SynthSeg: 2.
    activation : str
        Activation after each convolution, one of :data:`ACTIVATIONS`. SynthSeg: 'elu'.
    normalisation : str
        'batch' (SynthSeg), 'instance' (per-image, per-channel) or 'none'; applied once
        per level, after the level's convolutions.
    dropout : float
        Channel dropout rate after each convolution (0: none, as SynthSeg).
    """

    n_levels: int = 5
    conv_per_level: int = 2
    conv_size: int = 3
    base_features: int = 24
    feature_multiplier: float = 2.0
    activation: str = "elu"
    normalisation: str = "batch"
    dropout: float = 0.0

    def validate(self) -> None:
        if not 1 <= self.n_levels <= 8:
            raise SettingsError(f"n_levels must be in 1..8, got {self.n_levels}")
        self.check_at_least(1, "conv_per_level", "base_features")
        if self.conv_size < 1 or self.conv_size % 2 == 0:
            raise SettingsError(f"conv_size must be a positive odd number, got {self.conv_size}")
        if not self.feature_multiplier > 0:
            raise SettingsError(f"feature_multiplier must be > 0, got {self.feature_multiplier}")
        self.check_one_of("activation", ACTIVATIONS)
        self.check_one_of("normalisation", NORMALISATIONS)
        if not 0.0 <= self.dropout < 1.0:
            raise SettingsError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def size_multiple(self) -> int:
        """Each spatial input size must be a multiple of this (``2 ** (n_levels - 1)``)."""
        return 2 ** (self.n_levels - 1)

    def features(self, level: int) -> int:
        """Feature maps of the convolutions at ``level`` (0 = full resolution)."""
        return max(1, int(round(self.base_features * self.feature_multiplier**level)))
