"""Segmenter with real (tiny, random-weight) Keras models: files, outputs, errors, devices."""

import gzip

import keras
import nibabel as nib
import numpy as np
import pytest

from synthseg_bids.core.io import ImageError, save_image
from synthseg_bids.core.labels import default_label_table
from synthseg_bids.inference import (
    DeviceError,
    InferenceSettings,
    Segmenter,
    configure_device,
    default_model_path,
    visible_gpus,
    write_result,
)

from inference_fakes import phantom, voxel_network


@pytest.fixture
def scan(tmp_path):
    image, _ = phantom((36, 36, 36))
    affine = np.array([[-1.1, 0, 0, 20], [0, 0, 1.0, -18], [0, -1.0, 0, 17], [0, 0, 0, 1]])  # LSP-like, 1.1 mm
    return save_image(image, affine, tmp_path / "sub-01_T1w.nii.gz")


def test_keras_model_end_to_end(tiny_model, scan, tmp_path):
    segmenter = Segmenter(tiny_model, InferenceSettings(device="cpu", min_size=16))
    assert segmenter.model_path == tiny_model.resolve() and segmenter.model_info.resolution_mm == 1.0
    results = [segmenter.segment(scan, posteriors=True) for _ in range(2)]
    a, b = results
    np.testing.assert_array_equal(a.labels.data, b.labels.data)  # deterministic, model reused
    source = nib.load(scan)
    assert a.labels.shape == source.shape
    np.testing.assert_allclose(a.labels.affine, source.affine)
    assert set(np.unique(a.labels.data)) <= set(default_label_table().values.tolist())
    np.testing.assert_allclose(a.posteriors.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(a.labels.data, default_label_table().values[a.posteriors.argmax(-1)])
    out = write_result(
        a, labels=tmp_path / "o" / "dseg.nii.gz", posteriors=tmp_path / "o" / "probseg.nii.gz",
        volumes=tmp_path / "o" / "volumes.csv", qc=tmp_path / "o" / "qc.csv",
    )
    written = nib.load(out["labels"])
    np.testing.assert_array_equal(np.asarray(written.dataobj), a.labels.data)
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    assert nib.load(out["posteriors"]).shape == source.shape + (33,)
    header, row = out["volumes"].read_text().splitlines()
    assert header.startswith("scan,Left-Cerebral-White-Matter") and header.endswith("total intracranial")
    assert row.startswith("sub-01_T1w,")
    header, row = out["qc"].read_text().splitlines()
    assert header.endswith(",flag") and row.split(",")[-1] == ("true" if a.qc.flag else "false")  # as the BIDS tables


def test_write_result_all_or_nothing(tmp_path):
    image, _ = phantom((24, 24, 24))
    from synthseg_bids.core.io import Image

    result = Segmenter(voxel_network(), InferenceSettings(flip=False, shifts=1, min_size=8)).segment(Image(image, np.eye(4)))
    with pytest.raises(ValueError, match="posteriors were not computed"):
        write_result(result, labels=tmp_path / "a.nii.gz", posteriors=tmp_path / "p.nii.gz")
    with pytest.raises(ImageError, match=r"output name must end in one of \.nii\.gz, \.nii, \.mgz"):
        write_result(result, labels=tmp_path / "a.nii.gz", labels_conformed=tmp_path / "bad.txt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: (p.with_suffix(".txt").write_text("hello"), p.with_suffix(".txt"))[1], "not an image file"),
        (lambda p: save_image(np.zeros((8, 8, 8, 2), np.float32), np.eye(4), p), "4D with 2 volumes"),
        (lambda p: nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), p) or p, "2D"),
        (lambda p: save_image(np.full((8, 8, 8), np.nan, np.float32), np.eye(4), p), "NaN"),
        (lambda p: save_image(np.zeros((8, 8, 8), np.float32), np.eye(4), p), "no intensity contrast"),
        (lambda p: (p.write_bytes(gzip.compress(b"not a nifti")), p)[1], "cannot be read"),
    ],
)
def test_bad_inputs_name_the_file(tmp_path, make, message):
    path = make(tmp_path / "bad.nii.gz")
    segmenter = Segmenter(voxel_network(), InferenceSettings(flip=False, shifts=1, min_size=8))
    with pytest.raises(ImageError, match=message) as err:
        segmenter.segment(path)
    assert str(path) in str(err.value)


def test_bad_model_files(tmp_path):
    from synthseg_bids.network import ModelFileError

    bad = tmp_path / "model.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match=str(bad)):
        Segmenter(bad, InferenceSettings(device="cpu"))
    if not default_model_path().is_file():
        with pytest.raises(ModelFileError, match="default model is not installed"):
            Segmenter(None, InferenceSettings(device="cpu"))


def test_gpu_request_without_gpu_is_an_error():
    if visible_gpus():
        pytest.skip("a GPU is visible")
    with pytest.raises(DeviceError, match="no GPU"):
        configure_device("gpu")


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="TensorFlow-only: JAX refuses any thread count (tests/inference/test_backends_inference.py)",
)
def test_device_cannot_change_after_setup():
    used = configure_device("cpu" if not visible_gpus() else "gpu")
    assert configure_device("auto") == used
    with pytest.raises(DeviceError, match="cannot switch"):
        configure_device("auto", threads=3)


def test_settings_validation_and_round_trip():
    from synthseg_bids.core.settings import SettingsError

    settings = InferenceSettings(intensity_clip=(0, 80), crop=(160, 160, 160))
    assert InferenceSettings.from_json(settings.to_json()) == settings
    fast = InferenceSettings.fast()
    assert not fast.flip and fast.postprocess == "brain"
    for bad in [dict(device="tpu"), dict(threads=0), dict(postprocess="some"), dict(percentiles=(99, 1)),
                dict(patch_size=32, patch_overlap=32), dict(intensity_clip=(80, 0)), dict(crop=(1, 2))]:
        with pytest.raises(SettingsError):
            InferenceSettings(**bad)


def test_provenance_names_the_model_file_and_its_sha256(tiny_model, scan):
    import hashlib

    segmenter = Segmenter(tiny_model, InferenceSettings(device="cpu", min_size=16))
    result = segmenter.segment(scan)
    expected = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    assert [(p["role"], p["path"], p["sha256"]) for p in result.provenance()] == [
        ("segmentation", str(tiny_model.resolve()), expected)]
    assert result.provenance() == segmenter.provenance()
    assert result.parcellation is None and result.network_qc is None and result.parcel_volumes == {}
    assert Segmenter(voxel_network(), InferenceSettings(min_size=16)).segment(scan).provenance() == []
