"""Settings of the generative model (label map -> random synthetic MRI).

Defaults follow the original SynthSeg ``BrainGenerator`` / ``training`` defaults
(B. Billot et al., SynthSeg, Medical Image Analysis 2023; github.com/BBillot/SynthSeg,
``SynthSeg/brain_generator.py``, ``SynthSeg/labels_to_image_model.py``,
``SynthSeg/model_inputs.py``, ``ext/lab2im/layers.py``), not the defaults of the
individual lab2im layers. Ranges are given explicitly as ``(low, high)`` pairs so that a
deterministic transform can be requested by giving ``low == high``.

Units: distances and displacements are in voxels of the training label maps (1 mm for
the SynthSeg maps), resolutions and thicknesses in mm, angles in degrees, intensities in
the arbitrary units of the Gaussian mixture (before normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.settings import Settings, SettingsError

__all__ = ["GeneratorSettings"]

_DISTRIBUTIONS = ("uniform", "normal")


def _check_range(name: str, value: tuple[float, float], *, minimum: float | None = None) -> None:
    if len(value) != 2:
        raise SettingsError(f"{name} must be a (low, high) pair, got {value!r}")
    low, high = value
    if low > high:
        raise SettingsError(f"{name} must have low <= high, got {value!r}")
    if minimum is not None and low < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class GeneratorSettings(Settings):
    """Every randomisation range and switch of :class:`~synthseg_bids.generator.LabelsToImage`.

    Attributes
    ----------
    output_shape : tuple of 3 int, default (160, 160, 160)
        Shape (voxels) of the generated image and target. A random window of this shape is
        taken from the deformed label map (SynthSeg's random crop); where the window
        leaves the label map, background is generated.
    deform : bool, default True
        Apply the random affine and nonlinear deformation.
    scaling_range : (float, float), default (0.8, 1.2)
        Per-axis scaling factor ~ U(low, high) (SynthSeg ``scaling_bounds=0.2``).
    rotation_range : (float, float), default (-15, 15)
        Rotation angle about each axis in degrees ~ U(low, high) (``rotation_bounds=15``).
    shearing_range : (float, float), default (-0.012, 0.012)
        Each of the 6 off-diagonal shearing coefficients ~ U(low, high) (``shearing_bounds=.012``).
    translation_range : (float, float), default (0, 0)
        Per-axis translation in voxels ~ U(low, high) (SynthSeg: ``translation_bounds=False``;
        the random crop already translates the field of view).
    nonlin_std : float, default 4.0
        Maximum standard deviation (voxels) of the stationary velocity field sampled on a
        coarse grid; the standard deviation itself is drawn from U(0, nonlin_std). 0 turns
        the nonlinear deformation off.
    nonlin_scale : float, default 0.04
        Ratio between the coarse velocity grid shape and ``output_shape`` (grid spacing about
        1 / nonlin_scale = 25 voxels, as in SynthSeg).
    integration_steps : int, default 7
        Scaling-and-squaring steps integrating the velocity field into a diffeomorphism
        (neurite's ``VecInt`` default); 0 uses the velocity as a displacement.
    random_crop : bool, default True
        Random position of the output window inside the label map; otherwise centred.
    flip : bool, default True
        Random left/right flip (array axis 0 of the RAS label map) with label swap.
    flip_prob : float, default 0.5
        Probability of flipping.
    prior_distribution : {'uniform', 'normal'}, default 'uniform'
        Distribution of each class's Gaussian mean and std: U(row0, row1) or N(row0, row1).
    prior_means_range, prior_stds_range : (float, float), default (25, 225) and (5, 25)
        The two hyper-parameters used for every class when no prior arrays are given
        (SynthSeg's defaults for fully random contrast).
    prior_means, prior_stds : Path or None, default None
        ``.npy`` arrays of shape (2, n_classes) overriding the ranges (e.g. ``prior_means_t1.npy``
        with ``prior_distribution='normal'``).
    generation_classes : Path or None, default None
        ``.npy`` array (n_generation_labels,) of class indices 0..n_classes-1 overriding the
        classes of the :class:`~synthseg_bids.generator.GenerationSpec`.
    random_background : bool, default True
        As SynthSeg's ``build_model_inputs``: the background class gets mean = std = 0 with
        probability 0.05, mean ~ U(0, 15) and std ~ U(0, 5) with probability 0.25.
    bias_field : bool, default True
        Multiply by a smooth random bias field.
    bias_field_std : float, default 0.7
        Maximum std of the coarse log-bias grid; the std is drawn from U(0, bias_field_std).
    bias_scale : float, default 0.025
        Ratio between the coarse bias grid shape and ``output_shape``.
    bias_field_prob : float, default 0.95
        Probability of applying the bias field (lab2im ``BiasFieldCorruption`` default).
    normalise : bool, default True
        Clip intensities to [0, clip_max] then min-max normalise each image to [0, 1].
    clip_max : float, default 300
        Upper clipping value before normalisation (SynthSeg ``IntensityAugmentation(clip=300)``).
    gamma : bool, default True
        Random gamma: image ** exp(N(0, gamma_std)) (requires ``normalise``).
    gamma_std : float, default 0.5
        Standard deviation of log(gamma).
    blur : bool, default True
        Gaussian blur emulating the acquisition point-spread function (and, with
        ``randomise_resolution`` or ``data_res``, low-resolution acquisition + resampling).
    randomise_resolution : bool, default True
        Random acquisition resolution per image (SynthSeg ``randomise_res``).
    max_res_iso : float, default 4.0
        Isotropic resolution ~ U(voxel, max_res_iso) mm (chosen with probability ``prob_iso``).
    max_res_aniso : float, default 8.0
        Otherwise one random axis gets resolution ~ U(voxel, max_res_aniso) mm.
    prob_iso : float, default 0.1
        Probability of an isotropic rather than anisotropic resolution (lab2im ``SampleResolution``).
    prob_min : float, default 0.05
        Probability of keeping the label-map resolution.
    data_res, thickness : tuple of 3 float or None, default None
        Fixed acquisition resolution / slice thickness (mm) used when ``randomise_resolution``
        is off; ``None`` means the label-map voxel size (a slight blur of sigma 0.5 voxel).
    blur_range : float, default 1.03
        Each blurring sigma is multiplied by U(1 / blur_range, blur_range).
    blur_truncate : float, default 3.0
        Gaussian kernels are truncated at this many sigmas (zero padding outside the image).
    """

    output_shape: tuple[int, int, int] = (160, 160, 160)
    # spatial deformation, crop and flip
    deform: bool = True
    scaling_range: tuple[float, float] = (0.8, 1.2)
    rotation_range: tuple[float, float] = (-15.0, 15.0)
    shearing_range: tuple[float, float] = (-0.012, 0.012)
    translation_range: tuple[float, float] = (0.0, 0.0)
    nonlin_std: float = 4.0
    nonlin_scale: float = 0.04
    integration_steps: int = 7
    random_crop: bool = True
    flip: bool = True
    flip_prob: float = 0.5
    # Gaussian mixture
    prior_distribution: str = "uniform"
    prior_means_range: tuple[float, float] = (25.0, 225.0)
    prior_stds_range: tuple[float, float] = (5.0, 25.0)
    prior_means: Path | None = None
    prior_stds: Path | None = None
    generation_classes: Path | None = None
    random_background: bool = True
    # bias field and intensity augmentation
    bias_field: bool = True
    bias_field_std: float = 0.7
    bias_scale: float = 0.025
    bias_field_prob: float = 0.95
    normalise: bool = True
    clip_max: float = 300.0
    gamma: bool = True
    gamma_std: float = 0.5
    # resolution
    blur: bool = True
    randomise_resolution: bool = True
    max_res_iso: float = 4.0
    max_res_aniso: float = 8.0
    prob_iso: float = 0.1
    prob_min: float = 0.05
    data_res: tuple[float, float, float] | None = None
    thickness: tuple[float, float, float] | None = None
    blur_range: float = 1.03
    blur_truncate: float = 3.0

    def validate(self) -> None:
        self.check_shape("output_shape", minimum=2)
        _check_range("scaling_range", self.scaling_range)
        if self.scaling_range[0] <= 0:
            raise SettingsError(f"scaling_range must be positive, got {self.scaling_range!r}")
        _check_range("rotation_range", self.rotation_range)
        _check_range("shearing_range", self.shearing_range)
        _check_range("translation_range", self.translation_range)
        if self.prior_distribution not in _DISTRIBUTIONS:
            raise SettingsError(
                f"prior_distribution must be one of {', '.join(_DISTRIBUTIONS)}, got {self.prior_distribution!r}"
            )
        if self.prior_distribution == "uniform":
            _check_range("prior_means_range", self.prior_means_range)
            _check_range("prior_stds_range", self.prior_stds_range, minimum=0.0)
        elif len(self.prior_means_range) != 2 or len(self.prior_stds_range) != 2:
            raise SettingsError("prior_means_range and prior_stds_range must be (mean, std) pairs")
        for name in ("flip_prob", "bias_field_prob", "prob_iso", "prob_min"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SettingsError(f"{name} must be in [0, 1], got {value}")
        for name in ("nonlin_std", "bias_field_std", "gamma_std"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("nonlin_scale", "bias_scale"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise SettingsError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.integration_steps < 0:
            raise SettingsError(f"integration_steps must be >= 0, got {self.integration_steps}")
        if self.clip_max <= 0:
            raise SettingsError(f"clip_max must be positive, got {self.clip_max}")
        if self.gamma and not self.normalise:
            raise SettingsError("gamma needs normalise (a power of negative intensities is undefined)")
        if self.max_res_iso <= 0 or self.max_res_aniso <= 0:
            raise SettingsError("max_res_iso and max_res_aniso must be positive")
        if self.blur_range < 1:
            raise SettingsError(f"blur_range must be >= 1, got {self.blur_range}")
        if self.blur_truncate <= 0:
            raise SettingsError(f"blur_truncate must be positive, got {self.blur_truncate}")
        for name in ("data_res", "thickness"):
            value = getattr(self, name)
            if value is not None and (len(value) != 3 or min(value) <= 0):
                raise SettingsError(f"{name} must be 3 positive resolutions in mm, got {value!r}")
        if self.randomise_resolution and self.data_res is not None:
            raise SettingsError("data_res and randomise_resolution cannot be used together")
