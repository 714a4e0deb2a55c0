"""Settings of prediction (which outputs to write is the caller's choice, not a setting)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.settings import Settings, SettingsError

__all__ = ["DEVICES", "POSTPROCESSING", "PRECISIONS", "InferenceSettings"]

#: Accepted values of :attr:`InferenceSettings.device`.
DEVICES = ("auto", "cpu", "gpu")
#: Accepted values of :attr:`InferenceSettings.precision`.
PRECISIONS = ("auto", "float32", "bfloat16")
#: Accepted values of :attr:`InferenceSettings.postprocess`.
POSTPROCESSING = ("full", "brain", "none")


@dataclass(frozen=True)
class InferenceSettings(Settings):
    """How scans are segmented (defaults: SynthSeg's robust-to-nothing "2.0" prediction).

    Attributes
    ----------
    device : str
        'auto' (a GPU when TensorFlow sees one, else the CPU), 'cpu' (GPUs hidden from
        TensorFlow) or 'gpu' (an error when no GPU is visible). Applies to Keras models
        loaded from files; it must be chosen before TensorFlow initialises (the first
        :class:`~synthseg_bids.inference.Segmenter` of a process fixes it).
    threads : int or None
        TensorFlow intra-op and inter-op CPU threads (``None``: TensorFlow's default, all
        cores). Like ``device``, fixed at TensorFlow's initialisation.
    precision : str
        Arithmetic of the network: 'float32', 'bfloat16' (Keras' ``mixed_bfloat16`` policy:
        float32 weights, bfloat16 computation, float32 posteriors) or 'auto': bfloat16 where
        the device computes it natively (CPUs with AVX512-BF16 or AMX-BF16, NVIDIA GPUs of
        compute capability >= 8.0), float32 elsewhere (see :mod:`.precision`). 'bfloat16'
        on a device without native support is refused (emulated, it is many times slower).
    flip : bool
        Test-time augmentation: also segment the left/right-flipped scan and average the
        posteriors (with left/right channels swapped back). Doubles the network time.
    shifts : int
        Test-time ensemble over the phases of the network's pooling grid: the network also
        runs on ``shifts - 1`` copies of the window whose content is moved by fractions
        ``k / shifts`` (k = 1 .. shifts - 1) of the network's size multiple along every axis,
        and the posteriors of all copies (moved back) are averaged; with ``flip``, each copy
        is also flipped. 1: the window alone. Multiplies the network time by ``shifts``.
    postprocess : str
        'full': keep the largest connected component of the brain and of every
        topological group; 'brain': of the brain only; 'none'.
    posterior_threshold : float
        Posterior above which a voxel belongs to a structure's mask in post-processing.
    smoothing_sigma : float
        Gaussian smoothing of the posteriors (standard deviation in voxels of the model's
        grid; 0: none). SynthSeg: 0.5.
    intensity_clip : tuple of 2 float or None
        Clip raw intensities to this range before anything else (CT: ``(0, 80)`` HU).
    percentiles : tuple of 2 float
        Intensities are clipped to these percentiles (of all voxels of the resampled scan)
        and mapped linearly to [0, 1]. SynthSeg: (0.5, 99.5).
    head_threshold : float
        Normalised intensity above which a voxel counts as head when finding the head's
        bounding box (the network input is centred on it and covers it).
    crop : tuple of 3 int or None
        Fixed size (voxels of the model's grid, rounded up to the network's size multiple)
        of the analysed region, centred on the head; ``None``: the head's bounding box.
        Voxels outside the region are background.
    min_size : int
        Smallest network input size along each axis (voxels; padded with zeros), giving
        the network context around small fields of view. SynthSeg: 128.
    max_voxels : int
        Largest network input (voxels); larger inputs are segmented in overlapping
        patches. Default 224^3: the window of every head up to the largest training head
        (176 x 240 x 256 mm, 10.8 M voxels at 1 mm) runs whole, which takes less memory than
        patches on the CPU (measured: a 176 x 224 x 192 window peaks at 4.8 GiB whole, 8.7 GiB
        in 160^3 patches); lower it for a GPU with little memory.
    patch_size : int
        Edge (voxels) of the cubic patches used above ``max_voxels`` (rounded up to the
        network's size multiple).
    patch_overlap : int
        Overlap (voxels) between neighbouring patches; overlapping posteriors are averaged.
    resample_tolerance : float
        Input voxel sizes within this many mm of the model's resolution are not resampled.
    qc_min_confidence : float
        A QC group is flagged when its mean maximum posterior is below this.
    qc_min_flip_dice : float
        A QC group is flagged when the Dice between its segmentation from the scan and from
        the flipped scan is below this (only with ``flip``).
    """

    device: str = "auto"
    threads: int | None = None
    precision: str = "auto"
    flip: bool = True
    shifts: int = 1
    postprocess: str = "full"
    posterior_threshold: float = 0.25
    smoothing_sigma: float = 0.5
    intensity_clip: tuple[float, float] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    head_threshold: float = 0.1
    crop: tuple[int, int, int] | None = None
    min_size: int = 128
    max_voxels: int = 224**3
    patch_size: int = 160
    patch_overlap: int = 32
    resample_tolerance: float = 0.05
    qc_min_confidence: float = 0.7
    qc_min_flip_dice: float = 0.8

    @classmethod
    def fast(cls, **changes: Any) -> "InferenceSettings":
        """"Fast" mode: no test-time augmentation (neither flip nor shifted windows), brain-only post-processing."""
        return cls(**{"flip": False, "shifts": 1, "postprocess": "brain", **changes})

    def validate(self) -> None:
        self.check_one_of("device", DEVICES)
        self.check_one_of("precision", PRECISIONS)
        self.check_at_least(1, "shifts")
        if self.threads is not None and self.threads < 1:
            raise SettingsError(f"threads must be >= 1, got {self.threads}")
        self.check_one_of("postprocess", POSTPROCESSING)
        if not 0 < self.posterior_threshold < 1:
            raise SettingsError(f"posterior_threshold must be in (0, 1), got {self.posterior_threshold}")
        self.check_at_least(0, "smoothing_sigma", "resample_tolerance")
        self.check_at_least(1, "min_size")
        if self.intensity_clip is not None and (
            len(self.intensity_clip) != 2 or not self.intensity_clip[0] < self.intensity_clip[1]
        ):
            raise SettingsError(f"intensity_clip must be (low, high) with low < high, got {self.intensity_clip}")
        if len(self.percentiles) != 2 or not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise SettingsError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {self.percentiles}")
        if not 0 <= self.head_threshold < 1:
            raise SettingsError(f"head_threshold must be in [0, 1), got {self.head_threshold}")
        if self.crop is not None and (len(self.crop) != 3 or min(self.crop) < 1):
            raise SettingsError(f"crop must be 3 positive sizes, got {self.crop}")
        if self.patch_size < 1 or self.patch_overlap < 0 or self.patch_overlap >= self.patch_size:
            raise SettingsError(
                f"need patch_size >= 1 and 0 <= patch_overlap < patch_size, got {self.patch_size}, {self.patch_overlap}"
            )
        if self.max_voxels < self.patch_size**3:
            raise SettingsError(f"max_voxels ({self.max_voxels}) must be at least patch_size**3 ({self.patch_size**3})")
        for name in ("qc_min_confidence", "qc_min_flip_dice"):
            if not 0 <= getattr(self, name) <= 1:
                raise SettingsError(f"{name} must be in [0, 1], got {getattr(self, name)}")
