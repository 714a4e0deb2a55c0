"""Synthetic test scans of a chosen contrast, orientation and slice thickness, with their true labels.

A :class:`ScanRecipe` names a label map, a contrast, the scan's voxel orientation and its
slice thickness, and a seed; :func:`synthetic_scan` turns it into a NIfTI scan and its
label map. The generator runs without spatial deformation, flip, crop or gamma, so the scan is
the whole field of view of the label map (a whole head for SynthSeg's 256^3 maps) with dark
air around the head, as a real acquisition would be. Contrasts:

- ``t1``: SynthSeg's T1 priors (``prior_means_t1.npy`` / ``prior_stds_t1.npy``, per class of
  ``generation_classes_contrast_specific.npy``);
- ``t2``: the same priors with T2-like means of the brain classes (:data:`T2_CLASS_MEANS`:
  CSF bright, grey above white, pallidum dark);
- ``random``: fully random contrast (means U(25, 225), stds U(5, 25) per generation class).

Thick slices (``slice_mm = 5``): the generator blurs along the RAS z axis as a 5 mm
acquisition and the scan keeps every fifth plane (1 x 1 x 5 mm voxels); the true labels
are the label map's planes at the slice centres.

Used by the accuracy benchmark (``benchmarks/bench_accuracy.py``), the accuracy-floor test
and ``synthseg-bids evaluate-model``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["ACCURACY_SCANS", "CONTRASTS", "T2_CLASS_MEANS", "ScanRecipe", "contrast_generator", "synthetic_scan"]

#: Contrasts of :func:`contrast_generator`.
CONTRASTS = ("t1", "t2", "random")
#: T2-like means of the contrast-specific classes (SynthSeg's T1 priors for the others).
T2_CLASS_MEANS = {1: 200.0, 2: 70.0, 3: 110.0, 4: 75.0, 5: 115.0, 6: 95.0, 7: 95.0, 8: 70.0, 9: 85.0, 10: 80.0,
                  11: 100.0, 12: 150.0, 13: 80.0}


@dataclass(frozen=True)
class ScanRecipe:
    """One synthetic scan: ``label_map`` (a file name in the maps folder) as ``contrast``,
    stored in ``orientation`` (nibabel axis codes, e.g. 'LIA' as FreeSurfer's conformed
    space, 'RAS') with ``slice_mm``-thick axial slices (1 or 5), generated with ``seed``."""

    name: str
    label_map: str
    contrast: str
    orientation: str = "RAS"
    slice_mm: int = 1
    seed: int = 0


#: The fixed scans of the accuracy benchmark and of the accuracy-floor test: large fields of
#: view (whole 256^3 heads, where the network's windows matter): a T2-like scan stored LIA
#: (FreeSurfer's conformed orientation) and a T1-like one of 5 mm axial slices stored RAS;
#: seeds that training never used.
ACCURACY_SCANS = (
    ScanRecipe("t2_lia", "training_seg_03.nii.gz", "t2", "LIA", 1, 240103),
    ScanRecipe("t1_5mm", "training_seg_08.nii.gz", "t1", "RAS", 5, 240108),
)


def contrast_generator(
    label_maps: str | os.PathLike,
    spec_folder: str | os.PathLike,
    contrast: str,
    shape: tuple[int, int, int],
    seed: int,
    *,
    slice_mm: int = 1,
    t2_class_means: Mapping[int, float] = T2_CLASS_MEANS,
    gamma: bool = True,
):
    """A :class:`~synthseg_bids.generator.BrainGenerator` of one contrast, no deformation, flip or crop.

    ``label_maps`` is a folder or one file; ``spec_folder`` SynthSeg's ``labels_classes_priors``;
    ``gamma``: the generator's random gamma (which can lift the air around a whole head far
    above a real scan's background).
    """
    from .brain_generator import BrainGenerator
    from .settings import GeneratorSettings
    from .spec import GenerationSpec

    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    common = dict(output_shape=tuple(shape), deform=False, random_crop=False, flip=False, randomise_resolution=False,
                  gamma=gamma)
    if slice_mm != 1:
        common.update(data_res=(1.0, 1.0, float(slice_mm)), thickness=(1.0, 1.0, float(slice_mm)))
    if contrast == "random":
        spec = GenerationSpec.from_folder(spec_folder)
        settings = GeneratorSettings(prior_distribution="uniform", **common)
    else:
        spec = GenerationSpec.from_folder(spec_folder, classes="generation_classes_contrast_specific.npy",
                                          prior_means="prior_means_t1.npy", prior_stds="prior_stds_t1.npy")
        if contrast == "t2":
            spec = spec.with_class_means(dict(t2_class_means))
        settings = GeneratorSettings(prior_distribution="normal", **common)
    return BrainGenerator(label_maps, settings, spec=spec, seed=seed)


def synthetic_scan(
    recipe: ScanRecipe, label_maps: str | os.PathLike, spec_folder: str | os.PathLike, out_dir: str | os.PathLike
) -> tuple[Path, Path]:
    """Write ``<name>_scan.nii.gz`` and its true labels ``<name>_dseg.nii.gz`` in ``out_dir``.

    Returns the two paths. The scan covers the whole label map (for 5 mm slices, the z
    extent is cut to a multiple of 5 planes so the slice centres fall on the map's planes).
    """
    import nibabel as nib

    from ..core.io import save_image

    source = Path(label_maps) / recipe.label_map
    shape = tuple(int(n) for n in nib.load(source).shape[:3])
    if recipe.slice_mm != 1:
        shape = shape[:2] + (shape[2] - shape[2] % recipe.slice_mm,)
    generator = contrast_generator(source, spec_folder, recipe.contrast, shape, recipe.seed, slice_mm=recipe.slice_mm,
                                   gamma=False)
    image, labels, affine = generator.generate()
    if recipe.slice_mm != 1:
        step = recipe.slice_mm
        image, labels = image[:, :, ::step], labels[:, :, ::step]
        affine = affine @ np.diag([1.0, 1.0, float(step), 1.0])
    image, labels, affine = _reoriented(image, labels, affine, recipe.orientation)
    out_dir = Path(out_dir)
    scan = save_image(image, affine, out_dir / f"{recipe.name}_scan.nii.gz", dtype=np.float32)
    truth = save_image(labels, affine, out_dir / f"{recipe.name}_dseg.nii.gz", dtype=np.int16)
    return scan, truth


def _reoriented(image: np.ndarray, labels: np.ndarray, affine: np.ndarray, codes: str):
    """The RAS arrays and affine stored with voxel axes ``codes`` (same world positions)."""
    import nibabel.orientations as nio

    transform = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(tuple(codes)))
    new_affine = affine @ nio.inv_ornt_aff(transform, image.shape)
    return nio.apply_orientation(image, transform), nio.apply_orientation(labels, transform), new_affine
