"""The generative model as one Keras layer: generation-index map -> (random image, one-hot target).

:class:`LabelsToImage` re-implements SynthSeg's ``labels_to_image_model`` (B. Billot et
al., github.com/BBillot/SynthSeg, ``SynthSeg/labels_to_image_model.py`` and the lab2im
layers ``RandomSpatialDeformation``, ``RandomCrop``, ``RandomFlip``,
``SampleConditionalGMM``, ``BiasFieldCorruption``, ``IntensityAugmentation``,
``SampleResolution``, ``DynamicGaussianBlur`` and ``MimicAcquisition``) with
``keras.ops`` / ``keras.random`` only, so it runs on the TensorFlow and JAX backends and
inside ``jax.jit`` (static shapes, no Python branching on tensor values; the settings'
switches are Python-level). Differences in design, for speed:

- The deformation is evaluated on the *output* grid only: output voxel coordinates are
  flipped, displaced by the nonlinear field, moved by the random crop offset and mapped
  by the affine into the input map, then ONE nearest-neighbour gather reads the index
  map. Labels therefore never take new values.
- Coarse random fields (velocity, bias) are upsampled with separable linear-interpolation
  matrices (three small matrix products) rather than gathers.
- Blurring and the low-resolution acquisition (nearest down-sampling at the acquisition
  resolution, then linear up-sampling back: lab2im ``MimicAcquisition``) are linear along
  each axis, so they are applied together as one (S, S) matrix per axis and image, built in
  closed form from the sampled resolution and sigma. Shapes stay static whatever the
  sampled resolution.

Parameter sampling (:meth:`LabelsToImage.sample_parameters`) is separate from the
deterministic synthesis (:meth:`LabelsToImage.synthesise`), so that tests and callers can
impose known transforms; ``call`` chains the two.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from .settings import GeneratorSettings
from .spec import GenerationSpec

__all__ = ["LabelsToImage", "blur_resample_matrix", "linear_resize_matrix"]

Tensor = Any


def linear_resize_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Matrix (n_out, n_in) of 1-D linear interpolation with aligned end points.

    ``matrix @ x`` resamples ``x`` (n_in samples spanning [0, 1]) at n_out samples spanning
    the same interval; a single input sample is repeated.
    """
    matrix = np.zeros((n_out, n_in), dtype=np.float32)
    if n_in == 1:
        matrix[:, 0] = 1.0
        return matrix
    position = np.arange(n_out) * (n_in - 1) / max(n_out - 1, 1)
    low = np.minimum(np.floor(position).astype(int), n_in - 2)
    weight = position - low
    matrix[np.arange(n_out), low] = 1.0 - weight
    matrix[np.arange(n_out), low + 1] += weight
    return matrix


def blur_resample_matrix(size: int, resolution: Tensor, sigma: Tensor, truncate: float) -> Tensor:
    """Per-image matrices (B, size, size) of Gaussian blur + low-resolution acquisition along one axis.

    Row ``o`` of the matrix gives output voxel ``o`` as a combination of input voxels:
    the image is blurred with a Gaussian of std ``sigma`` (voxels; zero padding, kernel
    truncated at ``floor(truncate * sigma + 0.5)`` voxels as ``scipy.ndimage.gaussian_filter1d``),
    sampled by nearest neighbour at ``D = floor(size / resolution)`` low-resolution positions
    ``round(j * size / D)``, and linearly interpolated back at every voxel (lab2im
    ``MimicAcquisition``: low-resolution coordinate ``o * D / size``).

    Parameters
    ----------
    size
        Number of voxels S along the axis (static).
    resolution
        (B,) acquisition resolution in voxels (>= 1; 1 means no down-sampling).
    sigma
        (B,) blur standard deviation in voxels (0 means no blur).
    truncate
        Kernel radius in standard deviations.
    """
    resolution = ops.maximum(ops.cast(resolution, "float32"), 1.0)[:, None]
    sigma = ops.maximum(ops.cast(sigma, "float32"), 1e-3)[:, None, None]
    n_low = ops.maximum(ops.floor(size / resolution), 1.0)
    step = size / n_low
    position = ops.arange(size, dtype="float32")[None, :]
    low_coord = position / step
    j0 = ops.floor(low_coord)
    weight = low_coord - j0
    j1 = ops.minimum(j0 + 1.0, n_low - 1.0)
    i0 = ops.clip(ops.round(j0 * step), 0.0, size - 1.0)
    i1 = ops.clip(ops.round(j1 * step), 0.0, size - 1.0)
    radius = ops.floor(truncate * sigma + 0.5)

    def kernel(distance: Tensor) -> Tensor:
        return ops.where(ops.abs(distance) <= radius, ops.exp(-0.5 * ops.square(distance / sigma)), 0.0)

    offsets = ops.arange(-(size - 1), size, dtype="float32")[None, None, :]
    norm = ops.sum(kernel(offsets), axis=-1, keepdims=True)
    columns = ops.arange(size, dtype="float32")[None, None, :]
    rows0 = kernel(columns - i0[:, :, None]) / norm
    rows1 = kernel(columns - i1[:, :, None]) / norm
    return (1.0 - weight)[:, :, None] * rows0 + weight[:, :, None] * rows1


def _resize(field: Tensor, matrices: list[np.ndarray]) -> Tensor:
    """Separable linear resize of (B, n0, n1, n2[, C]) with one matrix (m_a, n_a) per axis."""
    suffix = "c" if len(field.shape) == 5 else ""
    field = ops.einsum(f"ij,bjyz{suffix}->biyz{suffix}", matrices[0], field)
    field = ops.einsum(f"ij,bxjz{suffix}->bxiz{suffix}", matrices[1], field)
    return ops.einsum(f"ij,bxyj{suffix}->bxyi{suffix}", matrices[2], field)


def _apply_axis_matrices(image: Tensor, matrices: list[Tensor]) -> Tensor:
    """Apply per-image matrices (B, S_a, S_a) along axes 1, 2, 3 of (B, S0, S1, S2)."""
    image = ops.einsum("bij,bjyz->biyz", matrices[0], image)
    image = ops.einsum("bij,bxjz->bxiz", matrices[1], image)
    return ops.einsum("bij,bxyj->bxyi", matrices[2], image)


def _trilinear(field: Tensor, coords: Tensor) -> Tensor:
    """Sample (B, m0, m1, m2, C) at (B, m0, m1, m2, 3) grid coordinates, clamping at the edges."""
    shape = field.shape[1:4]
    batch = ops.shape(field)[0]
    channels = field.shape[4]
    flat = ops.reshape(field, (-1, channels))
    base = ops.reshape(ops.arange(batch, dtype="int32"), (-1, 1, 1, 1)) * (shape[0] * shape[1] * shape[2])
    clipped = [ops.clip(coords[..., a], 0.0, shape[a] - 1.0) for a in range(3)]
    low = [ops.minimum(ops.floor(c), max(shape[a] - 2, 0)) for a, c in enumerate(clipped)]
    frac = [c - f for c, f in zip(clipped, low)]
    low = [ops.cast(f, "int32") for f in low]
    result = 0.0
    for corner in range(8):
        bits = [(corner >> a) & 1 for a in range(3)]
        idx = [ops.minimum(low[a] + bits[a], shape[a] - 1) for a in range(3)]
        weight = 1.0
        for a in range(3):
            weight = weight * (frac[a] if bits[a] else 1.0 - frac[a])
        flat_index = base + (idx[0] * shape[1] + idx[1]) * shape[2] + idx[2]
        result = result + weight[..., None] * ops.take(flat, flat_index, axis=0)
    return result


def _rotation_matrices(angles_deg: Tensor) -> Tensor:
    """(B, 3) angles in degrees -> (B, 3, 3) rotation Rx @ Ry @ Rz (lab2im ``create_rotation_transform``)."""
    angles = angles_deg * (math.pi / 180.0)
    c, s = ops.cos(angles), ops.sin(angles)
    one, zero = ops.ones_like(c[:, 0]), ops.zeros_like(c[:, 0])

    def matrix(rows: list[list[Tensor]]) -> Tensor:
        return ops.stack([ops.stack(row, axis=-1) for row in rows], axis=-2)

    rx = matrix([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = matrix([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rz = matrix([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return ops.matmul(ops.matmul(rx, ry), rz)


def _shearing_matrices(shear: Tensor) -> Tensor:
    """(B, 6) off-diagonal coefficients -> (B, 3, 3) shearing matrix (lab2im ``create_shearing_transform``)."""
    one = ops.ones_like(shear[:, 0])
    rows = [[one, shear[:, 0], shear[:, 1]], [shear[:, 2], one, shear[:, 3]], [shear[:, 4], shear[:, 5], one]]
    return ops.stack([ops.stack(row, axis=-1) for row in rows], axis=-2)


class LabelsToImage(keras.layers.Layer):
    """Random synthetic MRI and one-hot target from a map of generation indices (SynthSeg).

    Parameters
    ----------
    spec
        Generation labels, classes, priors, flip permutation and output label table. The
        class/prior files named in ``settings`` replace the spec's (``spec.with_settings``).
    settings
        Ranges and switches (default :class:`GeneratorSettings`: SynthSeg's training defaults).
    seed
        Seed of the layer's ``keras.random.SeedGenerator`` (None: drawn from OS entropy).
    voxel_size
        Voxel size (mm) of the input maps along each axis: the minimum acquisition
        resolution and the unit of blurring sigmas.
    **kwargs
        Passed to ``keras.layers.Layer`` (e.g. ``name``).

    Notes
    -----
    ``call(indices)`` takes an integer tensor (B, X, Y, Z) of indices into
    ``spec.generation_labels`` (axis 0 left -> right) and returns

    - ``image``: ``(B, *output_shape, 1)`` float32 in [0, 1] (un-normalised intensities when
      ``settings.normalise`` is off);
    - ``target``: ``(B, *output_shape, K)`` float32 one-hot over ``spec.label_table`` channels.

    Steps (each switchable): affine + diffeomorphic deformation, random crop, left/right
    flip with label swap, Gaussian mixture sampling, bias field, clipping + min-max
    normalisation + gamma, blur and low-resolution acquisition (in the order of SynthSeg's
    ``labels_to_image_model``). Under JAX use ``stateless_call`` (as Keras trainers do)
    so that the seed state is threaded through ``jit``.
    """

    def __init__(
        self,
        spec: GenerationSpec,
        settings: GeneratorSettings = GeneratorSettings(),
        seed: int | None = None,
        *,
        voxel_size: tuple[float, float, float] | np.ndarray = (1.0, 1.0, 1.0),
        **kwargs: Any,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.spec = spec.with_settings(settings)
        self.settings = settings
        self.seed = int(np.random.default_rng().integers(2**31 - 1)) if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.voxel_size = np.broadcast_to(np.asarray(voxel_size, dtype=np.float32), (3,)).copy()
        self.output_shape_ = tuple(int(s) for s in settings.output_shape)
        spec = self.spec

        # Per-class hyper-parameters (2, C): the spec's arrays or the settings' ranges.
        n_classes = spec.n_classes
        self._prior_means = (
            spec.prior_means if spec.prior_means is not None
            else np.tile(np.asarray(settings.prior_means_range, np.float32)[:, None], (1, n_classes))
        )
        self._prior_stds = (
            spec.prior_stds if spec.prior_stds is not None
            else np.tile(np.asarray(settings.prior_stds_range, np.float32)[:, None], (1, n_classes))
        )
        self._background_class = int(spec.generation_classes[0])

        shape = self.output_shape_
        # Coarse grids: ceil(shape * scale) as SynthSeg, at least 2 points so that small
        # outputs still get a varying field; velocities are integrated on a 4x finer grid.
        self._nonlin_shape = tuple(max(2, math.ceil(s * settings.nonlin_scale)) for s in shape)
        self._integration_shape = tuple(min(s, 4 * n) for s, n in zip(shape, self._nonlin_shape))
        self._bias_shape = tuple(max(2, math.ceil(s * settings.bias_scale)) for s in shape)
        self._use_nonlin = settings.deform and settings.nonlin_std > 0
        self._use_bias = settings.bias_field and settings.bias_field_std > 0

    # -- Keras plumbing --------------------------------------------------------
    def build(self, input_shape: tuple) -> None:
        if len(input_shape) != 4 or any(s is None for s in input_shape[1:]):
            raise ValueError(f"LabelsToImage expects (batch, X, Y, Z) with static X, Y, Z; got {input_shape}")
        self.built = True

    def compute_output_spec(self, indices: Any) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        batch = indices.shape[0]
        return (
            keras.KerasTensor((batch, *self.output_shape_, 1), dtype="float32"),
            keras.KerasTensor((batch, *self.output_shape_, len(self.spec.label_table)), dtype="float32"),
        )

    def get_config(self) -> dict:
        config = super().get_config()
        spec = self.spec
        config.update(
            settings=self.settings.to_dict(),
            seed=self.seed,
            voxel_size=self.voxel_size.tolist(),
            spec={
                "generation_labels": spec.generation_labels.tolist(),
                "generation_classes": spec.generation_classes.tolist(),
                "flip_permutation": spec.flip_permutation.tolist(),
                "segmentation_labels": spec.segmentation_labels.tolist(),
                "label_table": spec.label_table.to_metadata(),
                "prior_means": None if spec.prior_means is None else spec.prior_means.tolist(),
                "prior_stds": None if spec.prior_stds is None else spec.prior_stds.tolist(),
            },
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "LabelsToImage":
        from ..core.labels import LabelTable

        config = dict(config)
        spec_fields = dict(config.pop("spec"))
        spec_fields["label_table"] = LabelTable.from_metadata(spec_fields["label_table"])
        settings = GeneratorSettings.from_dict(config.pop("settings")).replace(
            generation_classes=None, prior_means=None, prior_stds=None
        )
        return cls(GenerationSpec(**spec_fields), settings, **config)

    # -- sampling ---------------------------------------------------------------
    def _uniform(self, shape: tuple, low: Any, high: Any) -> Tensor:
        unit = keras.random.uniform(shape, seed=self.seed_generator)
        return low + (high - low) * unit

    def _normal(self, shape: tuple) -> Tensor:
        return keras.random.normal(shape, seed=self.seed_generator)

    def sample_parameters(self, batch_size: Any, input_shape: tuple[int, int, int]) -> dict[str, Tensor]:
        """Draw every random quantity of one batch.

        Parameters
        ----------
        batch_size
            B (int or scalar tensor).
        input_shape
            Static spatial shape (X, Y, Z) of the index maps.

        Returns
        -------
        dict of str to float32 tensor
            ``affine`` (B, 3, 3); ``translation`` (B, 3) input voxels; ``crop_shift`` (B, 3)
            output voxels; ``velocity`` ``(B, *coarse, 3)`` voxels (only with a nonlinear
            deformation); ``flip`` (B,) 0/1; ``means``, ``stds`` (B, G) per generation label;
            ``gmm_noise`` ``(B, *output_shape)`` N(0, 1); ``bias`` ``(B, *coarse)`` log-field (only
            with a bias field); ``log_gamma`` (B,); ``resolution``, ``thickness`` (B, 3) mm and
            ``sigma`` (B, 3) voxels (only with blur).
        """
        s = self.settings
        b = batch_size
        params: dict[str, Tensor] = {}
        if s.deform:
            scaling = self._uniform((b, 3), *s.scaling_range)
            rotation = _rotation_matrices(self._uniform((b, 3), *s.rotation_range))
            shearing = _shearing_matrices(self._uniform((b, 6), *s.shearing_range))
            params["affine"] = ops.matmul(ops.matmul(scaling[:, :, None] * ops.eye(3)[None], shearing), rotation)
            params["translation"] = self._uniform((b, 3), *s.translation_range)
        else:
            params["affine"] = ops.zeros((b, 3, 3)) + ops.eye(3)[None]
            params["translation"] = ops.zeros((b, 3))
        half_room = np.maximum(np.asarray(input_shape) - np.asarray(self.output_shape_), 0) / 2.0
        if s.random_crop:
            params["crop_shift"] = self._uniform((b, 3), -half_room, half_room)
        else:
            params["crop_shift"] = ops.zeros((b, 3))
        if self._use_nonlin:
            std = self._uniform((b, 1, 1, 1, 1), 0.0, s.nonlin_std)
            params["velocity"] = std * self._normal((b, *self._nonlin_shape, 3))
        if s.flip:
            params["flip"] = ops.cast(self._uniform((b,), 0.0, 1.0) < s.flip_prob, "float32")
        else:
            params["flip"] = ops.zeros((b,))
        params["means"], params["stds"] = self._sample_mixture(b)
        params["gmm_noise"] = self._normal((b, *self.output_shape_))
        if self._use_bias:
            std = self._uniform((b, 1, 1, 1), 0.0, s.bias_field_std)
            apply = ops.cast(self._uniform((b, 1, 1, 1), 0.0, 1.0) < s.bias_field_prob, "float32")
            params["bias"] = apply * std * self._normal((b, *self._bias_shape))
        params["log_gamma"] = s.gamma_std * self._normal((b,)) if s.gamma else ops.zeros((b,))
        if s.blur:
            params.update(self._sample_resolution(b))
        return params

    def _sample_mixture(self, b: Any) -> tuple[Tensor, Tensor]:
        """Per-class Gaussian means/stds (SynthSeg ``build_model_inputs``), gathered per generation label."""
        s = self.settings
        n_classes = self._prior_means.shape[1]
        if s.prior_distribution == "uniform":
            means = self._uniform((b, n_classes), self._prior_means[0], self._prior_means[1])
            stds = self._uniform((b, n_classes), self._prior_stds[0], self._prior_stds[1])
        else:
            means = self._prior_means[0] + self._prior_means[1] * self._normal((b, n_classes))
            stds = self._prior_stds[0] + self._prior_stds[1] * self._normal((b, n_classes))
        means, stds = ops.maximum(means, 0.0), ops.maximum(stds, 0.0)
        if s.random_background:
            coin = self._uniform((b, 1), 0.0, 1.0)
            low_mean = self._uniform((b, 1), 0.0, 15.0)
            low_std = self._uniform((b, 1), 0.0, 5.0)
            background_mean = ops.where(coin > 0.95, 0.0, ops.where(coin > 0.7, low_mean, means[:, :1]))
            background_std = ops.where(coin > 0.95, 0.0, ops.where(coin > 0.7, low_std, stds[:, :1]))
            is_background = (np.arange(n_classes) == self._background_class)[None]
            means = ops.where(is_background, background_mean, means)
            stds = ops.where(is_background, background_std, stds)
        classes = self.spec.generation_classes
        return ops.take(means, classes, axis=1), ops.take(stds, classes, axis=1)

    def _sample_resolution(self, b: Any) -> dict[str, Tensor]:
        """Acquisition resolution, slice thickness and blur sigma (lab2im ``SampleResolution``,
        ``blurring_sigma_for_downsampling``, ``gaussian_kernel(blur_range)``).

        Isotropic resolutions draw one value for the three axes (the documented intent of
        ``max_res_iso``); anisotropic ones change one random axis.
        """
        s = self.settings
        min_res = self.voxel_size[None]
        if s.randomise_resolution:
            iso = self._uniform((b, 1), 0.0, 1.0) * (s.max_res_iso - min_res) + min_res
            aniso_value = self._uniform((b, 1), 0.0, 1.0) * (s.max_res_aniso - min_res) + min_res
            axis = ops.floor(self._uniform((b, 1), 0.0, 3.0))
            aniso = ops.where(ops.arange(3, dtype="float32")[None] == axis, aniso_value, min_res)
            resolution = ops.where(self._uniform((b, 1), 0.0, 1.0) < s.prob_iso, iso, aniso)
            resolution = ops.where(self._uniform((b, 1), 0.0, 1.0) < s.prob_min, min_res + 0.0 * resolution, resolution)
            thickness = self._uniform((b, 3), min_res, resolution)
        else:
            resolution = ops.zeros((b, 3)) + np.asarray(s.data_res or self.voxel_size, np.float32)[None]
            thickness = ops.zeros((b, 3)) + np.asarray(s.thickness or s.data_res or self.voxel_size, np.float32)[None]
            thickness = ops.minimum(thickness, resolution)
        sigma = ops.where(thickness == min_res, 0.5, 0.75 * thickness / min_res)
        sigma = sigma * self._uniform((b, 3), 1.0 / s.blur_range, s.blur_range)
        return {"resolution": resolution, "thickness": thickness, "sigma": sigma}

    # -- synthesis ----------------------------------------------------------------
    def _displacement(self, velocity: Tensor) -> Tensor:
        """Coarse velocity -> displacement on the output grid (B, *output_shape, 3), output voxels.

        The velocity is upsampled to an integration grid, integrated by scaling and
        squaring (``integration_steps`` self-compositions) and upsampled to the output grid.
        """
        shape, grid = self.output_shape_, self._integration_shape
        to_grid = [linear_resize_matrix(m, n) for m, n in zip(grid, self._nonlin_shape)]
        field = _resize(velocity, to_grid)
        steps = self.settings.integration_steps
        if steps:
            spacing = np.array([(s - 1) / max(m - 1, 1) for s, m in zip(shape, grid)], np.float32)
            field = field / (spacing * 2.0**steps)
            identity = np.stack(np.meshgrid(*[np.arange(m, dtype=np.float32) for m in grid], indexing="ij"), -1)
            # A loop construct (not a Python loop): unrolled, XLA fuses the chained gathers
            # and its compile time grows exponentially with the number of steps.
            field = ops.fori_loop(0, steps, lambda _, u: u + _trilinear(u, identity[None] + u), field)
            field = field * spacing
        return _resize(field, [linear_resize_matrix(s, m) for s, m in zip(shape, grid)])

    def _deform_indices(self, indices: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Output-grid generation indices: one nearest-neighbour gather of the input map."""
        in_shape = tuple(int(v) for v in indices.shape[1:4])
        batch = ops.shape(indices)[0]
        shape = self.output_shape_
        centred = [np.arange(n, dtype=np.float32) - (n - 1) / 2.0 for n in shape]
        x0 = ops.where(params["flip"][:, None] > 0.5, -centred[0][None], centred[0][None])
        q = [
            ops.reshape(x0, (-1, shape[0], 1, 1)),
            ops.reshape(centred[1], (1, 1, shape[1], 1)),
            ops.reshape(centred[2], (1, 1, 1, shape[2])),
        ]
        q = [q[a] + ops.reshape(params["crop_shift"][:, a], (-1, 1, 1, 1)) for a in range(3)]
        if "velocity" in params:
            displacement = self._displacement(params["velocity"])
            q = [q[a] + displacement[..., a] for a in range(3)]
        affine, translation = params["affine"], params["translation"]
        flat_index = ops.reshape(ops.arange(batch, dtype="int32"), (-1, 1, 1, 1)) * int(np.prod(in_shape))
        valid = None
        for a in range(3):
            centre = (in_shape[a] - 1) / 2.0
            p = sum(ops.reshape(affine[:, a, k], (-1, 1, 1, 1)) * q[k] for k in range(3))
            p = p + ops.reshape(translation[:, a], (-1, 1, 1, 1)) + centre
            r = ops.cast(ops.floor(p + 0.5), "int32")
            inside = (r >= 0) & (r < in_shape[a])
            valid = inside if valid is None else valid & inside
            stride = int(np.prod(in_shape[a + 1:]))
            flat_index = flat_index + ops.clip(r, 0, in_shape[a] - 1) * stride
        values = ops.take(ops.reshape(indices, (-1,)), flat_index)
        values = ops.where(valid, ops.cast(values, "int32"), 0)
        return ops.where(
            ops.reshape(params["flip"], (-1, 1, 1, 1)) > 0.5, ops.take(self.spec.flip_permutation, values), values
        )

    def synthesise(self, indices: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Deterministic synthesis from given parameters (see :meth:`sample_parameters`).

        Returns
        -------
        image : tensor (B, *output_shape) float32
        labels : tensor (B, *output_shape) int32
            Generation indices of the output (deformed, cropped, flipped and swapped).
        """
        s = self.settings
        labels = self._deform_indices(indices, params)
        batch = ops.shape(labels)[0]
        n_labels = self.spec.n_labels
        gather = ops.reshape(ops.arange(batch, dtype="int32"), (-1, 1, 1, 1)) * n_labels + labels
        means = ops.take(ops.reshape(params["means"], (-1,)), gather)
        stds = ops.take(ops.reshape(params["stds"], (-1,)), gather)
        image = means + stds * params["gmm_noise"]
        if "bias" in params:
            bias = _resize(params["bias"], [linear_resize_matrix(o, n) for o, n in zip(self.output_shape_, self._bias_shape)])
            image = image * ops.exp(bias)
        if s.normalise:
            image = ops.clip(image, 0.0, s.clip_max)
            low = ops.min(image, axis=(1, 2, 3), keepdims=True)
            high = ops.max(image, axis=(1, 2, 3), keepdims=True)
            image = (image - low) / (high - low + keras.config.epsilon())
            if s.gamma:
                image = ops.power(image, ops.exp(ops.reshape(params["log_gamma"], (-1, 1, 1, 1))))
        if s.blur:
            resolution = params["resolution"] / self.voxel_size[None]
            matrices = [
                blur_resample_matrix(self.output_shape_[a], resolution[:, a], params["sigma"][:, a], s.blur_truncate)
                for a in range(3)
            ]
            image = _apply_axis_matrices(image, matrices)
        return ops.cast(image, "float32"), labels

    def to_target(self, labels: Tensor) -> Tensor:
        """Generation indices (B, ...) -> one-hot (B, ..., K) float32 over ``spec.label_table`` channels."""
        channels = ops.take(self.spec.channel_of_index, labels)
        return ops.one_hot(channels, len(self.spec.label_table), dtype="float32")

    def to_segmentation(self, labels: Tensor) -> Tensor:
        """Generation indices -> FreeSurfer segmentation values (int32; extra-cerebral -> 0)."""
        return ops.take(self.spec.segmentation_labels, labels)

    def call(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        params = self.sample_parameters(ops.shape(indices)[0], tuple(int(v) for v in indices.shape[1:4]))
        image, labels = self.synthesise(indices, params)
        return ops.expand_dims(image, -1), self.to_target(labels)
