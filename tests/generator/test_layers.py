"""LabelsToImage: each step against an independent reference (closed form, scipy, numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops
from scipy import ndimage, special

from helpers import make_toy_label_map
from synthseg_bids.generator import GenerationSpec, GeneratorSettings
from synthseg_bids.generator.layers import LabelsToImage, blur_resample_matrix

#: Blur, resampling and field upsampling are matrix products: on GPU, JAX's default float32
#: matmul precision (TF32) gives up to ~5e-3 relative error, so comparisons allow that much.
MATMUL_RTOL = 5e-3

#: Every random step off: the output is the input map, intensities are the raw mixture.
QUIET = dict(
    deform=False, random_crop=False, flip=False, bias_field=False, normalise=False, gamma=False,
    blur=False, random_background=False,
)


def toy(shape=(32, 32, 32)):
    labels = make_toy_label_map(shape)
    spec = GenerationSpec.from_labels(np.unique(labels))
    return labels, spec, spec.index_lut()[labels].astype(np.uint8)


def run(layer, indices, params=None):
    """(image, output generation indices) as numpy, sampling parameters unless given."""
    indices = np.asarray(indices)
    if params is None:
        params = layer.sample_parameters(indices.shape[0], indices.shape[1:])
    image, labels = layer.synthesise(indices, params)
    return ops.convert_to_numpy(image), ops.convert_to_numpy(labels), params


def test_call_shapes_dtypes_and_range():
    _, spec, idx = toy()
    layer = LabelsToImage(spec, GeneratorSettings(output_shape=(24, 24, 24)), seed=0)
    image, target = layer(np.stack([idx, idx]))
    image, target = ops.convert_to_numpy(image), ops.convert_to_numpy(target)
    assert image.shape == (2, 24, 24, 24, 1) and image.dtype == np.float32
    assert target.shape == (2, 24, 24, 24, len(spec.label_table)) and target.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0 + 1e-6
    assert np.array_equal(np.unique(target), [0.0, 1.0]) and np.all(target.sum(-1) == 1.0)


def test_same_seed_same_output_different_seed_different():
    _, spec, idx = toy()
    settings = GeneratorSettings(output_shape=(24, 24, 24))
    outputs = [ops.convert_to_numpy(LabelsToImage(spec, settings, seed=s)(idx[None])[0]) for s in (5, 5, 6)]
    assert np.array_equal(outputs[0], outputs[1])
    assert not np.allclose(outputs[0], outputs[2])


def test_labels_never_take_new_values_under_full_augmentation():
    labels, spec, idx = toy()
    layer = LabelsToImage(spec, GeneratorSettings(output_shape=(28, 28, 28)), seed=1)
    _, out, _ = run(layer, np.stack([idx] * 3))
    allowed = set(spec.segmentation_labels[np.unique(idx)].tolist())
    found = set(ops.convert_to_numpy(layer.to_segmentation(out)).ravel().tolist())
    assert found <= allowed
    assert len(found) >= 5  # the deformation kept the structures, it did not wipe the map
    target = ops.convert_to_numpy(layer.to_target(out))
    assert set(spec.label_table.values[np.unique(target.argmax(-1))].tolist()) == found


def test_without_deformation_output_is_input():
    _, spec, idx = toy()
    layer = LabelsToImage(spec, GeneratorSettings(output_shape=idx.shape, **QUIET), seed=0)
    _, out, _ = run(layer, idx[None])
    assert np.array_equal(out[0], idx)


def test_flip_mirrors_map_and_swaps_every_left_right_pair():
    labels, spec, idx = toy()
    settings = GeneratorSettings(output_shape=idx.shape, **{**QUIET, "flip": True}, flip_prob=1.0)
    _, out, _ = run(LabelsToImage(spec, settings, seed=0), idx[None])
    flipped = spec.generation_labels[out[0]]
    mirror = {2: 41, 41: 2, 3: 42, 42: 3, 4: 43, 43: 4}
    expected = np.vectorize(lambda v: mirror.get(v, v))(labels[::-1])
    assert np.array_equal(flipped, expected)
    assert not np.array_equal(flipped, labels[::-1])  # the swap matters for this map


def _blob_map(shape=(40, 40, 40), centre=(24.0, 15.0, 18.0), radius=4.0):
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    return (np.linalg.norm(grid - np.array(centre), axis=-1) <= radius).astype(np.int32) * 2


def _centroid(mask):
    return np.array(ndimage.center_of_mass(mask))


def test_known_translation_moves_centroid():
    labels = _blob_map()
    spec = GenerationSpec.from_labels([0, 2])
    settings = GeneratorSettings(
        output_shape=labels.shape, **{**QUIET, "deform": True}, nonlin_std=0.0, scaling_range=(1.0, 1.0),
        rotation_range=(0.0, 0.0), shearing_range=(0.0, 0.0), translation_range=(3.0, 3.0),
    )
    _, out, _ = run(LabelsToImage(spec, settings, seed=0), (labels // 2)[None].astype(np.uint8))
    # output(o) = input(o + 3): the blob moves by -3 voxels along every axis
    np.testing.assert_allclose(_centroid(out[0] == 1), _centroid(labels == 2) - 3.0, atol=1e-6)


def test_known_scaling_moves_centroid_about_the_centre():
    labels = _blob_map()
    spec = GenerationSpec.from_labels([0, 2])
    settings = GeneratorSettings(
        output_shape=labels.shape, **{**QUIET, "deform": True}, nonlin_std=0.0, scaling_range=(1.25, 1.25),
        rotation_range=(0.0, 0.0), shearing_range=(0.0, 0.0),
    )
    _, out, _ = run(LabelsToImage(spec, settings, seed=0), (labels // 2)[None].astype(np.uint8))
    centre = (np.array(labels.shape) - 1) / 2.0
    expected = centre + (_centroid(labels == 2) - centre) / 1.25  # output(o) = input(1.25 (o - c) + c)
    np.testing.assert_allclose(_centroid(out[0] == 1), expected, atol=0.35)
    assert (out[0] == 1).sum() < (labels == 2).sum()  # shrunk by ~1.25^3


def test_sampled_affine_is_rotation_shear_scaling_within_ranges():
    _, spec, idx = toy()
    settings = GeneratorSettings(output_shape=(24, 24, 24), shearing_range=(0.0, 0.0), scaling_range=(1.0, 1.0))
    params = LabelsToImage(spec, settings, seed=3).sample_parameters(16, idx.shape)
    affine = ops.convert_to_numpy(params["affine"])
    np.testing.assert_allclose(affine @ affine.transpose(0, 2, 1), np.broadcast_to(np.eye(3), affine.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(affine), 1.0, atol=1e-5)
    angles = np.degrees(np.arccos(np.clip((np.trace(affine, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() <= np.sqrt(3) * 15 + 1e-3 and angles.max() > 1.0


def test_constant_velocity_integrates_to_the_same_constant_displacement():
    # exp(v) for a constant velocity is the translation by v: an exact closed form of scaling and squaring
    _, spec, idx = toy()
    layer = LabelsToImage(spec, GeneratorSettings(output_shape=(24, 24, 24)), seed=0)
    velocity = np.broadcast_to(np.array([1.5, -2.0, 0.5], np.float32), (1, *layer._nonlin_shape, 3))
    displacement = ops.convert_to_numpy(layer._displacement(velocity))
    expected = np.broadcast_to(velocity[0, 0, 0, 0], displacement.shape)
    np.testing.assert_allclose(displacement, expected, atol=MATMUL_RTOL * 2.0)


def test_nonlinear_deformation_is_smooth_and_invertible():
    _, spec, idx = toy()
    layer = LabelsToImage(spec, GeneratorSettings(output_shape=(32, 32, 32)), seed=4)
    velocity = 4.0 * np.random.default_rng(0).standard_normal((1, *layer._nonlin_shape, 3)).astype(np.float32)
    displacement = ops.convert_to_numpy(layer._displacement(velocity))[0]
    jacobian = np.stack([np.stack(np.gradient(displacement[..., a]), -1) for a in range(3)], -2) + np.eye(3)
    assert np.abs(displacement).max() > 1.0  # the field does deform
    assert np.linalg.det(jacobian).min() > 0  # diffeomorphic: no folding


def test_mixture_statistics_within_prior_bounds_and_classes_shared():
    labels, spec, idx = toy()
    layer = LabelsToImage(spec, GeneratorSettings(output_shape=idx.shape, **QUIET), seed=2)
    image, out, params = run(layer, np.stack([idx] * 4))
    means, stds = ops.convert_to_numpy(params["means"]), ops.convert_to_numpy(params["stds"])
    for b in range(4):
        for g in np.unique(out[b]):
            values = image[b][out[b] == g]
            n = values.size
            tol_mean, tol_std = 5 * 25 / np.sqrt(n), 5 * 25 / np.sqrt(2 * n)
            assert 25 - tol_mean <= values.mean() <= 225 + tol_mean
            assert 5 - tol_std <= values.std() <= 25 + tol_std
            assert abs(values.mean() - means[b, g]) <= 5 * stds[b, g] / np.sqrt(n) + 1e-4
            assert abs(values.std() - stds[b, g]) <= 5 * stds[b, g] / np.sqrt(2 * n) + 1e-4
        # left and right white matter share one Gaussian (one class)
        i2, i41 = spec.index_lut()[[2, 41]]
        assert means[b, i2] == means[b, i41] and stds[b, i2] == stds[b, i41]
    assert np.unique(means[0]).size == spec.n_classes


def test_normal_priors_from_arrays():
    labels, spec, idx = toy()
    prior_means = np.stack([np.linspace(20, 200, spec.n_classes), np.full(spec.n_classes, 1e-3)])
    prior_stds = np.stack([np.full(spec.n_classes, 2.0), np.zeros(spec.n_classes)])
    spec = GenerationSpec.from_labels(spec.generation_labels, prior_means=prior_means, prior_stds=prior_stds)
    settings = GeneratorSettings(output_shape=idx.shape, prior_distribution="normal", **QUIET)
    image, out, _ = run(LabelsToImage(spec, settings, seed=0), idx[None])
    for g in np.unique(out[0]):
        values = image[0][out[0] == g]
        assert abs(values.mean() - prior_means[0, spec.generation_classes[g]]) < 5 * 2.0 / np.sqrt(values.size) + 0.01


def test_random_background_rule():
    _, spec, idx = toy()
    layer = LabelsToImage(spec, GeneratorSettings(output_shape=(24, 24, 24)), seed=0)
    params = layer.sample_parameters(400, idx.shape)
    means, stds = ops.convert_to_numpy(params["means"])[:, 0], ops.convert_to_numpy(params["stds"])[:, 0]
    zero = (means == 0) & (stds == 0)
    low = ~zero & (means < 15) & (stds < 5)
    assert 0.01 < zero.mean() < 0.1 and 0.15 < low.mean() < 0.36  # p = 0.05 and ~0.25 (+ chance)


def test_bias_field_is_smooth():
    _, spec, idx = toy()
    settings = GeneratorSettings(
        output_shape=idx.shape, **{**QUIET, "bias_field": True}, bias_field_prob=1.0,
        prior_means_range=(100.0, 100.0), prior_stds_range=(0.0, 0.0),
    )
    image, _, _ = run(LabelsToImage(spec, settings, seed=7), idx[None])
    log_field = np.log(image[0] / 100.0)
    assert log_field.std() > 0.01
    window = np.prod(np.meshgrid(*[np.hanning(n) for n in log_field.shape], indexing="ij"), axis=0)
    power = np.abs(np.fft.fftn((log_field - log_field.mean()) * window)) ** 2  # window: no wrap-around edge
    freq = np.sqrt(sum(f**2 for f in np.meshgrid(*[np.fft.fftfreq(n, 1 / n) for n in log_field.shape], indexing="ij")))
    assert power[freq <= 3].sum() / power.sum() > 0.95  # >95% of the energy in the lowest 3 cycles
    noise = np.random.default_rng(0).standard_normal(log_field.shape) * window
    noise_power = np.abs(np.fft.fftn(noise)) ** 2
    assert noise_power[freq <= 3].sum() / noise_power.sum() < 0.1  # the criterion rejects a rough field


def _step_edge_layer(shape, **kwargs):
    labels = np.zeros(shape, np.int32)
    labels[shape[0] // 2 :] = 2
    spec = GenerationSpec.from_labels(
        [0, 2], prior_means=np.array([[0.0, 100.0], [0.0, 0.0]]), prior_stds=np.zeros((2, 2))
    )
    settings = GeneratorSettings(output_shape=shape, prior_distribution="normal", **{**QUIET, "blur": True}, **kwargs)
    return LabelsToImage(spec, settings, seed=11), (labels // 2)[None].astype(np.uint8), labels * 50.0


def test_blur_matches_sigma_of_sampled_resolution_on_step_edge():
    shape = (64, 8, 8)
    layer, idx, step = _step_edge_layer(shape, max_res_iso=5.0, prob_iso=1.0, prob_min=0.0)
    params = layer.sample_parameters(1, shape)
    resolution, thickness = ops.convert_to_numpy(params["resolution"])[0], ops.convert_to_numpy(params["thickness"])[0]
    sigma = ops.convert_to_numpy(params["sigma"])[0]
    assert resolution[0] > 1 and 1 <= thickness[0] <= resolution[0]
    assert 1 / 1.03 - 1e-6 <= sigma[0] / (0.75 * thickness[0]) <= 1.03 + 1e-6  # SynthSeg: 0.75 * thickness / voxel
    params["resolution"] = ops.ones_like(params["resolution"])  # blur only: no down-sampling
    image, _, _ = run(layer, idx, params)
    profile = image[0, :, 4, 4]
    reference = ndimage.gaussian_filter1d(step[:, 4, 4], sigma[0], mode="constant", truncate=3.0)
    # the other two axes are constant inside the volume except at their zero-padded borders
    inner = ndimage.gaussian_filter1d(np.ones(8), sigma[1], mode="constant", truncate=3.0)[4]
    inner *= ndimage.gaussian_filter1d(np.ones(8), sigma[2], mode="constant", truncate=3.0)[4]
    np.testing.assert_allclose(profile, reference * inner, atol=MATMUL_RTOL * 100)
    x = np.arange(shape[0]) - (shape[0] // 2 - 0.5)
    closed_form = 50 * (1 + special.erf(x / (np.sqrt(2) * sigma[0]))) * inner
    # truncation at 3 sigma: < 0.3% of the step
    np.testing.assert_allclose(profile[16:48], closed_form[16:48], atol=0.3 + MATMUL_RTOL * 100)


def test_fixed_data_res_blurs_by_half_a_voxel():
    shape = (48, 8, 8)
    layer, idx, step = _step_edge_layer(shape, randomise_resolution=False, blur_range=1.0)
    image, _, params = run(layer, idx)
    np.testing.assert_allclose(ops.convert_to_numpy(params["sigma"]), 0.5)
    reference = ndimage.gaussian_filter(step, 0.5, mode="constant", truncate=3.0)
    np.testing.assert_allclose(image[0], reference, atol=MATMUL_RTOL * 100)


def _mimic_acquisition_reference(signal, resolution):
    """lab2im MimicAcquisition along one axis: nearest sampling at the low resolution, linear back."""
    size = signal.size
    n_low = max(int(np.floor(size / resolution)), 1)
    low = signal[np.clip(np.round(np.arange(n_low) * size / n_low), 0, size - 1).astype(int)]
    coord = np.arange(size) * n_low / size
    return np.interp(coord, np.arange(n_low), low)


@pytest.mark.parametrize("resolution", [1.0, 2.5, 4.0, 7.3])
def test_low_resolution_acquisition_matches_reference(resolution):
    signal = np.random.default_rng(0).random(40).astype(np.float32)
    matrix = ops.convert_to_numpy(blur_resample_matrix(40, np.array([resolution]), np.array([0.0]), 3.0))[0]
    np.testing.assert_allclose(matrix @ signal, _mimic_acquisition_reference(signal, resolution), atol=1e-5)
    # a wrong low-resolution grid (one sample more) is detected
    if resolution > 1:
        assert not np.allclose(matrix @ signal, _mimic_acquisition_reference(signal, resolution * 0.9), atol=1e-3)


def test_blur_resample_matrix_composes_blur_then_sampling():
    signal = np.random.default_rng(1).random(50)
    matrix = ops.convert_to_numpy(blur_resample_matrix(50, np.array([3.0]), np.array([1.7]), 3.0))[0]
    blurred = ndimage.gaussian_filter1d(signal, 1.7, mode="constant", truncate=3.0)
    np.testing.assert_allclose(matrix @ signal, _mimic_acquisition_reference(blurred, 3.0), atol=1e-5)


def test_resolution_sampling_follows_synthseg_rule():
    _, spec, idx = toy()
    layer = LabelsToImage(spec, GeneratorSettings(output_shape=(24, 24, 24)), seed=9)
    resolution = ops.convert_to_numpy(layer.sample_parameters(500, idx.shape)["resolution"])
    changed = (resolution > 1.0).sum(1)
    iso = (changed == 3) & np.isclose(resolution.min(1), resolution.max(1))
    assert np.all((changed == 0) | (changed == 1) | iso)
    assert 0.03 < iso.mean() < 0.17 and 0.01 < (changed == 0).mean() < 0.1  # p_iso 0.1, p_min 0.05
    assert resolution[iso].max() <= 4.0 and resolution.max() <= 8.0 and resolution.max() > 6.0


def test_real_label_map_at_160(shared_data):
    from synthseg_bids.generator import load_training_maps

    spec = GenerationSpec.from_folder(shared_data / "labels_classes_priors")
    maps = load_training_maps([shared_data / "training_label_maps" / "training_seg_01.nii.gz"], spec)
    layer = LabelsToImage(spec, GeneratorSettings(), seed=0)
    image, out, _ = run(layer, maps.indices)
    assert image.shape == (1, 160, 160, 160) and 0 <= image.min() and image.max() <= 1 + 1e-6
    segmentation = set(ops.convert_to_numpy(layer.to_segmentation(out)).ravel().tolist())
    assert segmentation <= set(spec.label_table.values.tolist()) and len(segmentation) > 20


def test_config_round_trip_rebuilds_the_same_generator():
    _, spec, idx = toy()
    layer = LabelsToImage(spec, GeneratorSettings(output_shape=(16, 16, 16)), seed=4, name="synth")
    clone = LabelsToImage.from_config(layer.get_config())
    assert clone.name == "synth" and clone.settings == layer.settings
    assert np.array_equal(ops.convert_to_numpy(layer(idx[None])[0]), ops.convert_to_numpy(clone(idx[None])[0]))
