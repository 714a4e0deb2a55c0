"""Build a tiny BIDS dataset offline, for a first run and for tests.

Usage::

    synthseg-bids-example OUT [--resolution MM] [--subjects N] [--force]

The scans are made from the MNI152 (ICBM 2009a) template shipped inside the
``nilearn`` package (read as a file; nilearn is not imported): a T1w resampled to the
chosen resolution, a T2w-like contrast remapped from the template's grey- and
white-matter probability maps (CSF bright, grey matter mid, white matter dark), a second
session, and a second subject at an anisotropic resolution (slices 1.5x thicker),
each with a small random rigid shift and noise. With ``--subjects N`` (N > 2), subjects
``sub-03`` ... add one T1w each (own shift and noise), for scaling tests and benchmarks. Layout::

    OUT/dataset_description.json  README  participants.tsv  participants.json
    OUT/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz  sub-01_ses-1_T2w.nii.gz  (+ .json)
    OUT/sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz
    OUT/sub-02/anat/sub-02_T1w.nii.gz
    OUT/sub-03/anat/sub-03_T1w.nii.gz ...        (only with n_subjects > 2)

The dataset passes the official BIDS validator.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..core.io import atomic_write_text, save_image
from .arguments import CommandParser

__all__ = ["main", "make_example_dataset", "template_path"]

_TEMPLATES = {
    "T1w": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
#: Field of view (mm) around the brain, and its centre in MNI space.
_FOV_MM = np.array([176.0, 212.0, 176.0])
_CENTRE_MM = np.array([0.0, -18.0, 12.0])


def template_path(kind: str = "T1w") -> Path:
    """Path of a template file bundled with nilearn (``T1w``, ``gm``, ``wm``)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the example data needs the 'nilearn' package (pip install nilearn)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / _TEMPLATES[kind]
    if not path.is_file():
        raise FileNotFoundError(f"template file missing from the nilearn installation: {path}")
    return path


def _resample(img: nib.Nifti1Image, shape, affine, order=1) -> np.ndarray:
    """Values of ``img`` on the grid (shape, affine)."""
    vox = np.linalg.inv(img.affine) @ affine
    return ndimage.affine_transform(np.asarray(img.dataobj, dtype=np.float32), vox[:3, :3], vox[:3, 3],
                                    output_shape=tuple(shape), order=order, mode="constant", cval=0.0)


def _grid(voxel_mm, shape=None, shift_mm=(0.0, 0.0, 0.0)):
    voxel = np.broadcast_to(np.asarray(voxel_mm, dtype=float), (3,))
    shape = np.asarray(shape) if shape is not None else np.round(_FOV_MM / voxel).astype(int)
    affine = np.diag([*voxel, 1.0])
    affine[:3, 3] = _CENTRE_MM + np.asarray(shift_mm) - voxel * (shape - 1) / 2.0
    return tuple(int(s) for s in shape), affine


def _contrast(kind: str, shape, affine, rng) -> np.ndarray:
    t1 = _resample(nib.load(template_path("T1w")), shape, affine)
    head = ndimage.binary_fill_holes(ndimage.gaussian_filter(t1, 1.0) > 0.08 * t1.max())
    if kind == "T1w":
        image = t1
    else:  # T2w-like: CSF bright, grey matter mid, white matter dark
        gm = _resample(nib.load(template_path("gm")), shape, affine)
        wm = _resample(nib.load(template_path("wm")), shape, affine)
        csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
        image = head * (0.95 * csf + 0.6 * gm + 0.3 * wm) * t1.max()
        image = np.where(head & (t1 < 0.15 * t1.max()), 0.05 * t1.max(), image)
    image = image * (1.0 + 0.03 * rng.standard_normal(image.shape)) + 0.01 * t1.max() * np.abs(
        rng.standard_normal(image.shape)
    )
    scaled = np.clip(image / max(float(image.max()), 1e-6), 0, 1) * 1000.0
    return np.round(scaled).astype(np.int16)


def make_example_dataset(
    out_dir: str | Path,
    *,
    resolution_mm: float = 2.0,
    shape: Sequence[int] | None = None,
    n_subjects: int = 2,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Write the example BIDS dataset (see the module docstring) and return its folder.

    Parameters
    ----------
    out_dir : path-like
        Folder to create (must be absent or empty unless ``force``).
    resolution_mm : float
        Voxel size of the isotropic scans; sub-02's slices are 1.5x thicker.
    shape : sequence of int, optional
        Grid shape (default: the brain's field of view at ``resolution_mm``); e.g.
        ``(40, 40, 40)`` with ``resolution_mm=4.5`` for tests.
    n_subjects : int
        At least 2; subjects ``sub-03`` onwards have one isotropic T1w each.
    seed : int
        Noise and shift seed.
    force : bool
        Replace an existing non-empty folder.
    """
    out = Path(out_dir)
    if n_subjects < 2:
        raise ValueError(f"n_subjects must be at least 2, got {n_subjects}")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} exists and is not empty (use --force to replace it)")
        shutil.rmtree(out)
    rng = np.random.default_rng(seed)
    scans = [
        ("01", "1", "T1w", resolution_mm),
        ("01", "1", "T2w", resolution_mm),
        ("01", "2", "T1w", resolution_mm),
        ("02", None, "T1w", (resolution_mm, resolution_mm, 1.5 * resolution_mm)),
    ] + [(f"{i:02d}", None, "T1w", resolution_mm) for i in range(3, n_subjects + 1)]
    sidecars = {
        "T1w": {"MagneticFieldStrength": 3, "Manufacturer": "synthetic", "RepetitionTime": 2.3, "EchoTime": 0.003,
                "InversionTime": 0.9, "FlipAngle": 9},
        "T2w": {"MagneticFieldStrength": 3, "Manufacturer": "synthetic", "RepetitionTime": 3.2, "EchoTime": 0.41},
    }
    for subject, session, contrast, voxel in scans:
        scan_shape = None
        if shape is not None:
            scan_shape = np.asarray(shape)
            scan_shape = np.round(scan_shape * resolution_mm / np.broadcast_to(voxel, (3,))).astype(int)
        grid_shape, affine = _grid(voxel, scan_shape, shift_mm=rng.uniform(-2, 2, 3))
        folder = out / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
        stem = f"sub-{subject}" + (f"_ses-{session}" if session else "") + f"_{contrast}"
        save_image(_contrast(contrast, grid_shape, affine, rng), affine, folder / f"{stem}.nii.gz")
        atomic_write_text(folder / f"{stem}.json", json.dumps(sidecars[contrast], indent=2) + "\n")
    description = {
        "Name": "synthseg-bids example dataset",
        "BIDSVersion": "1.10.0",
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["synthseg-bids"],
        "HowToAcknowledge": "Images derived from the MNI ICBM 2009a template (Fonov et al., 2011).",
    }
    atomic_write_text(out / "dataset_description.json", json.dumps(description, indent=2) + "\n")
    atomic_write_text(
        out / "README",
        "Synthetic example dataset written by synthseg_bids.cli.example_data from the MNI152 ICBM 2009a "
        "template: sub-01 has two sessions (T1w and a T2w-like contrast in ses-1), sub-02 one anisotropic T1w.\n",
    )
    participants = "".join(f"sub-{i:02d}\t{20 + 10 * (i % 5)}\t{'MF'[i % 2]}\n" for i in range(1, n_subjects + 1))
    atomic_write_text(out / "participants.tsv", "participant_id\tage\tsex\n" + participants)
    atomic_write_text(
        out / "participants.json",
        json.dumps({"age": {"Description": "age (synthetic)", "Units": "year"},
                    "sex": {"Description": "sex (synthetic)", "Levels": {"F": "female", "M": "male"}}}, indent=2),
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="synthseg-bids-example",
        description="Write a tiny BIDS dataset (two subjects, T1w and T2w-like scans) built offline from "
        "the MNI152 template shipped with nilearn.",
    )
    parser.add_argument("out_dir", type=Path, help="folder to create")
    parser.add_argument("--resolution", type=float, default=2.0, metavar="MM", help="voxel size in mm")
    parser.add_argument("--subjects", type=int, default=2, metavar="N",
                        help="number of subjects (default 2; sub-03 onwards have one T1w each)")
    parser.add_argument("--force", action="store_true", help="replace an existing non-empty folder")
    args = parser.parse_args(argv)
    if args.resolution <= 0:
        parser.error(f"--resolution must be positive, got {args.resolution}")
    if args.subjects < 2:
        parser.error(f"--subjects must be at least 2, got {args.subjects}")
    try:
        out = make_example_dataset(args.out_dir, resolution_mm=args.resolution, n_subjects=args.subjects,
                                   force=args.force)
    except (FileExistsError, FileNotFoundError) as err:
        print(f"synthseg-bids-example: error: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
