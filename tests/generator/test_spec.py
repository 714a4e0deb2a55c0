"""GeneratorSettings, GenerationSpec and load_training_maps: validation, orientation, errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from helpers import make_toy_label_map, toy_affine
from synthseg_bids.core.io import ImageError
from synthseg_bids.core.settings import SettingsError
from synthseg_bids.generator import GenerationSpec, GeneratorSettings, load_training_maps


def test_settings_defaults_are_synthseg_training_defaults_and_round_trip(tmp_path):
    s = GeneratorSettings()
    assert s.output_shape == (160, 160, 160) and s.scaling_range == (0.8, 1.2) and s.rotation_range == (-15, 15)
    assert (s.shearing_range, s.nonlin_std, s.nonlin_scale) == ((-0.012, 0.012), 4.0, 0.04)
    assert (s.bias_field_std, s.bias_scale, s.max_res_iso, s.max_res_aniso, s.blur_range) == (0.7, 0.025, 4, 8, 1.03)
    assert (s.prior_means_range, s.prior_stds_range, s.gamma_std) == ((25, 225), (5, 25), 0.5)
    changed = s.replace(output_shape=(96, 96, 96), flip=False)
    path = changed.save(tmp_path / "gen.toml")
    assert GeneratorSettings.from_file(path) == changed


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(scaling_range=(1.2, 0.8)), "scaling_range"),
        (dict(prior_distribution="gamma"), "prior_distribution"),
        (dict(flip_prob=1.5), "flip_prob"),
        (dict(output_shape=(160, 160)), "output_shape"),
        (dict(normalise=False), "gamma needs normalise"),
        (dict(data_res=(1.0, 1.0, 3.0)), "randomise_resolution"),
    ],
)
def test_settings_validation(changes, message):
    with pytest.raises(SettingsError, match=message):
        GeneratorSettings(**changes)


def test_shared_spec_flip_from_ordering_equals_flip_from_freesurfer_mirrors(shared_data):
    folder = shared_data / "labels_classes_priors"
    by_mirror = GenerationSpec.from_folder(folder)
    by_order = GenerationSpec.from_folder(folder, n_neutral=18)
    assert np.array_equal(by_mirror.flip_permutation, by_order.flip_permutation)
    assert not np.array_equal(by_order.flip_permutation, np.arange(by_order.n_labels))
    t1 = GenerationSpec.from_folder(folder, classes="generation_classes_contrast_specific.npy",
                                    prior_means="prior_means_t1.npy", prior_stds="prior_stds_t1.npy")
    # the contrast-specific classes pair left and right: consistent with the permutation
    # (generation_classes.npy, for random contrast, gives each hemisphere its own classes)
    assert np.array_equal(t1.generation_classes[t1.flip_permutation], t1.generation_classes)
    assert not np.array_equal(by_order.generation_classes[by_order.flip_permutation], by_order.generation_classes)
    assert t1.n_classes == 25 and t1.prior_means.shape == (2, 25)
    assert set(by_order.segmentation_labels.tolist()) == set(by_order.label_table.values.tolist())


def test_spec_from_labels_shares_classes_between_mirrors():
    spec = GenerationSpec.from_labels([0, 2, 41, 16, 258, 24])
    cls = dict(zip(spec.generation_labels.tolist(), spec.generation_classes.tolist()))
    assert cls[2] == cls[41] and len({cls[0], cls[2], cls[16], cls[258], cls[24]}) == 5
    seg = dict(zip(spec.generation_labels.tolist(), spec.segmentation_labels.tolist()))
    assert seg[258] == 0 and seg[24] == 24 and seg[41] == 41
    assert spec.generation_labels[spec.flip_permutation].tolist() == [0, 41, 2, 16, 258, 24]


def test_spec_rejects_inconsistent_arrays():
    with pytest.raises(ValueError, match="prior_means"):
        GenerationSpec.from_labels([0, 2, 41], prior_means=np.zeros((2, 3)))  # 2 classes, not 3
    with pytest.raises(ValueError, match="background"):
        GenerationSpec.from_labels([2, 0])


def _save(data, affine, path):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def test_maps_are_reoriented_to_ras_and_indexed(tmp_path):
    labels = make_toy_label_map((20, 22, 24))
    ras = toy_affine()
    # the same image stored LIA (FreeSurfer conformed): voxel (i, j, k) = RAS voxel (X-1-i, k, Z-1-j)
    lia_data = labels[::-1, :, ::-1].transpose(0, 2, 1)
    to_ras_voxel = np.array([[-1, 0, 0, 19], [0, 0, 1, 0], [0, -1, 0, 23], [0, 0, 0, 1]], dtype=float)
    lia_affine = ras @ to_ras_voxel
    assert nib.aff2axcodes(lia_affine) == ("L", "I", "A")
    path = _save(np.ascontiguousarray(lia_data).astype(np.float32), lia_affine, tmp_path / "lia.nii.gz")
    spec = GenerationSpec.from_labels(np.unique(labels))
    maps = load_training_maps(path, spec)
    assert maps.indices.dtype == np.uint8 and maps.indices.shape == (1, 20, 22, 24)
    assert np.array_equal(spec.generation_labels[maps.indices[0]], labels)
    np.testing.assert_allclose(maps.affine, ras)


def test_bad_maps_give_clear_errors_naming_the_file(tmp_path):
    labels = make_toy_label_map((16, 16, 16))
    spec = GenerationSpec.from_labels(np.unique(labels))
    noisy = _save(labels + 0.5, toy_affine(), tmp_path / "float.nii.gz")
    with pytest.raises(ImageError, match="float.nii.gz.*non-integer"):
        load_training_maps([noisy], spec)
    extra = labels.copy()
    extra[0, 0, 0] = 999
    unknown = _save(extra, toy_affine(), tmp_path / "unknown.nii.gz")
    with pytest.raises(ImageError, match="unknown.nii.gz.*unknown labels without priors: 999"):
        load_training_maps([unknown], spec)
    good = _save(labels, toy_affine(), tmp_path / "good.nii.gz")
    small = _save(labels[:8], toy_affine(), tmp_path / "small.nii.gz")
    with pytest.raises(ImageError, match="small.nii.gz.*share one shape"):
        load_training_maps([good, small], spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="empty.*contains no label maps"):
        load_training_maps(tmp_path / "empty", spec)
