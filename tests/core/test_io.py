"""Image I/O: validation errors name the file and the problem; writes are atomic."""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np
import pytest

from synthseg_bids.core.io import (
    ImageError,
    atomic_path,
    load_image,
    load_label_map,
    save_image,
    strip_image_suffix,
    voxel_sizes,
)


def _nifti(path, data, affine=None, **kw):
    affine = np.diag([1.0, 2.0, 3.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(data), affine, **kw), str(path))
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mgz"])
def test_round_trip_keeps_data_and_affine(tmp_path, suffix):
    rng = np.random.default_rng(0)
    data = rng.random((5, 6, 7)).astype(np.float32)
    rot = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], float) @ np.diag([0.7, 1.2, 3.0])
    affine = np.eye(4)
    affine[:3, :3] = rot
    affine[:3, 3] = [10, -20, 5]
    out = save_image(data, affine, tmp_path / f"img{suffix}")
    img = load_image(out)
    np.testing.assert_array_equal(img.data, data)
    np.testing.assert_allclose(img.affine, affine, atol=1e-5)
    np.testing.assert_allclose(img.zooms, [0.7, 1.2, 3.0], rtol=1e-6)
    # nibabel reads the same thing independently
    np.testing.assert_allclose(nib.load(str(out)).affine, affine, atol=1e-5)


def test_voxel_sizes_of_rotated_affine():
    theta = 0.3
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([2.0, 3.0, 4.0])
    np.testing.assert_allclose(voxel_sizes(affine), [2, 3, 4])


def test_single_volume_4d_accepted_several_rejected(tmp_path):
    one = _nifti(tmp_path / "one.nii.gz", np.ones((4, 4, 4, 1), np.float32))
    assert load_image(one).shape == (4, 4, 4)
    many = _nifti(tmp_path / "many.nii.gz", np.ones((4, 4, 4, 3), np.float32))
    with pytest.raises(ImageError, match=r"many\.nii\.gz: is 4D with 3 volumes"):
        load_image(many)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "file not found"),
        (lambda p: (p.write_bytes(b"not an image at all"), p)[1], "cannot be read"),
        (lambda p: _nifti(p, np.ones((4, 4), np.float32), np.eye(4)), "is 2D"),
        (lambda p: _nifti(p, np.full((3, 3, 3), np.nan, np.float32)), "NaN or infinite"),
    ],
    ids=["missing", "garbage", "2d", "nan"],
)
def test_bad_files_raise_one_clear_error(tmp_path, make, message):
    path = make(tmp_path / "bad.nii.gz")
    with pytest.raises(ImageError) as info:
        load_image(path)
    text = str(info.value)
    assert text.startswith(str(path)) and message in text
    assert "\n" not in text


@pytest.mark.parametrize("size", [0.0, -2.0])
def test_zero_or_negative_voxel_size_rejected(tmp_path, size):
    path = _nifti(tmp_path / "zero.nii", np.ones((3, 3, 3), np.float32), np.eye(4))
    raw = bytearray(path.read_bytes())
    # patch the header on disk: pixdim[2] (offset 84) and qform/sform codes 0 (offsets 252/254),
    # so that readers derive the affine from the bad voxel size
    raw[84:88] = np.float32(size).tobytes()
    raw[252:256] = np.zeros(2, np.int16).tobytes()
    path.write_bytes(bytes(raw))
    with np.errstate(all="ignore"), pytest.raises(ImageError, match=r"zero\.nii: .*voxel size"):
        load_image(path)


def test_truncated_gzip_rejected(tmp_path):
    good = _nifti(tmp_path / "good.nii.gz", np.random.default_rng(1).random((20, 20, 20)).astype(np.float32))
    raw = good.read_bytes()
    bad = tmp_path / "trunc.nii.gz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageError, match=r"trunc\.nii\.gz: .*(truncated|cannot be read)"):
        load_image(bad)


def test_label_map_rejects_non_integer_values(tmp_path):
    path = _nifti(tmp_path / "lab.nii.gz", np.full((3, 3, 3), 1.5, np.float32))
    with pytest.raises(ImageError, match="non-integer"):
        load_label_map(path)
    ok = _nifti(tmp_path / "labf.nii.gz", np.full((3, 3, 3), 41.0, np.float32))
    img = load_label_map(ok)
    assert img.data.dtype == np.int32 and np.all(img.data == 41)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.nii.gz"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["out.nii.gz"]


def test_save_image_creates_folder_and_no_temp_left(tmp_path):
    out = save_image(np.zeros((2, 2, 2), np.int16), np.eye(4), tmp_path / "a" / "b" / "x.nii.gz")
    assert out.exists() and sorted(os.listdir(out.parent)) == ["x.nii.gz"]
    with gzip.open(out) as fh:  # really gzipped
        assert len(fh.read(348)) == 348


def test_strip_image_suffix():
    assert strip_image_suffix("/a/sub-01_T1w.nii.gz") == "sub-01_T1w"
    assert strip_image_suffix("scan.mgz") == "scan"
    assert strip_image_suffix("notes.txt") == "notes.txt"
