"""Synthetic test scans: orientation, slice thickness and labels (checked with nibabel's own reorientation)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from synthseg_bids.generator.scans import ScanRecipe, synthetic_scan


@pytest.mark.slow
def test_a_recipe_stored_lia_holds_the_same_scan_as_stored_ras(shared_data, tmp_path):
    folder = (shared_data / "training_label_maps", shared_data / "labels_classes_priors")
    ras = synthetic_scan(ScanRecipe("a", "training_seg_02.nii.gz", "t1", "RAS", 1, 5), *folder, tmp_path)
    lia = synthetic_scan(ScanRecipe("b", "training_seg_02.nii.gz", "t1", "LIA", 1, 5), *folder, tmp_path)
    for one, two in zip(ras, lia):
        a, b = nib.load(one), nib.load(two)
        assert nib.aff2axcodes(a.affine) == ("R", "A", "S") and nib.aff2axcodes(b.affine) == ("L", "I", "A")
        canonical = nib.as_closest_canonical(b)
        np.testing.assert_allclose(canonical.affine, a.affine, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(canonical.dataobj), np.asarray(a.dataobj))
    truth = np.asarray(nib.load(ras[1]).dataobj)
    source = np.asarray(nib.load(shared_data / "training_label_maps" / "training_seg_02.nii.gz").dataobj)
    assert truth.shape == source.shape  # the whole field of view: no crop
    assert 2 in truth and 41 in truth and not np.isin(truth, [258, 165]).any()  # extra-cerebral labels -> 0


@pytest.mark.slow
def test_thick_slices_keep_every_fifth_plane(shared_data, tmp_path):
    folder = (shared_data / "training_label_maps", shared_data / "labels_classes_priors")
    scan, truth = synthetic_scan(ScanRecipe("c", "training_seg_04.nii.gz", "t2", "RAS", 5, 7), *folder, tmp_path)
    image = nib.load(scan)
    assert image.shape == (256, 256, 51) and np.allclose(image.header.get_zooms(), (1, 1, 5))
    assert nib.load(truth).shape == image.shape
    with pytest.raises(ValueError, match="contrast must be one of"):
        synthetic_scan(ScanRecipe("d", "training_seg_04.nii.gz", "flair", "RAS", 1, 7), *folder, tmp_path)
