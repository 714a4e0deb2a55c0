"""Benchmark: Dice + HD95 + mean surface distance of all structures, ours vs medpy.

A real 256^3 label map is compared with a perturbed copy of itself (nearest-neighbour
warp by a smooth random displacement of up to a few voxels, seeded), so that every
structure has realistic, non-trivial errors. The 32 non-background SynthSeg structures
are scored

- by :mod:`synthseg_bids.core.metrics` (one joint histogram for Dice, one bounding
  box per structure for the surface distances), and
- by a per-label loop over ``medpy.metric.binary`` ``dc``, ``hd95`` and ``assd`` on the
  whole volumes,

and the script prints both times (wall clock, and CPU time, which is steadier on a
shared machine), their ratio and the largest relative difference
between the two sets of values.

Usage::

    PYTHONPATH=. python benchmarks/bench_metrics.py [--data ../shared/data/synthseg] [--map 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from synthseg_bids.core.io import load_label_map, voxel_sizes
from synthseg_bids.core.labels import default_label_table
from synthseg_bids.core.metrics import dice_scores, surface_distances

__all__ = ["main", "perturb", "score_with_medpy", "score_with_synthseg_bids", "timed"]

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthseg"


def perturb(
    labels: np.ndarray, rng: np.random.Generator, amplitude: float = 4.0, smoothing: float = 8.0
) -> np.ndarray:
    """Nearest-neighbour warp of a label map by a smooth random displacement field.

    Parameters
    ----------
    labels : numpy.ndarray of int, 3D
        Label map.
    rng : numpy.random.Generator
        Source of randomness.
    amplitude : float
        Largest displacement, in voxels.
    smoothing : float
        Gaussian smoothing of the noise field, in voxels.
    """
    coarse = [s // 8 for s in labels.shape]
    field = []
    for _ in range(labels.ndim):
        noise = ndimage.gaussian_filter(rng.standard_normal(coarse), smoothing / 8)
        noise *= amplitude / max(np.abs(noise).max(), 1e-12)
        field.append(ndimage.zoom(noise, [s / c for s, c in zip(labels.shape, coarse)], order=1))
    grid = np.indices(labels.shape, dtype=np.float32)
    return ndimage.map_coordinates(labels, grid + np.stack(field), order=0, mode="nearest")


def score_with_synthseg_bids(reference, prediction, labels, spacing) -> np.ndarray:
    """Dice, HD95 (mm) and mean surface distance (mm) per label; shape (3, K)."""
    dice = dice_scores(reference, prediction, labels)
    distances = surface_distances(reference, prediction, labels, spacing, percentile=95)
    return np.stack([dice, distances.hd_percentile, distances.msd])


def score_with_medpy(reference, prediction, labels, spacing) -> np.ndarray:
    """The same scores from a per-label loop over medpy on the whole volumes."""
    from medpy.metric import binary

    scores = np.empty((3, len(labels)))
    for i, label in enumerate(labels):
        ref, pred = reference == label, prediction == label
        try:
            scores[:, i] = binary.dc(pred, ref), binary.hd95(pred, ref, spacing), binary.assd(pred, ref, spacing)
        except RuntimeError:  # medpy refuses empty masks; ours gives NaN distances
            scores[:, i] = binary.dc(pred, ref) if ref.any() or pred.any() else np.nan, np.nan, np.nan
    return scores


def timed(function, *args) -> tuple[np.ndarray, float, float]:
    """Result of ``function(*args)``, its wall-clock and CPU (process) time in seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"data folder (default: {DEFAULT_DATA})")
    parser.add_argument("--map", type=int, default=1, help="training label map number (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbation (default: 0)")
    args = parser.parse_args(argv)

    image = load_label_map(args.data / "training_label_maps" / f"training_seg_{args.map:02d}.nii.gz")
    reference = image.data
    prediction = perturb(reference, np.random.default_rng(args.seed))
    spacing = voxel_sizes(image.affine)
    table = default_label_table()
    labels = table.values[table.values != 0]
    missing = [int(v) for v in labels if not np.any(reference == v)]
    print(f"label map {image.path.name}: shape {reference.shape}, voxel {spacing.round(3).tolist()} mm, "
          f"{labels.size} structures ({len(missing)} absent: {missing})")

    ours, ours_wall, ours_cpu = timed(score_with_synthseg_bids, reference, prediction, labels, spacing)
    theirs, medpy_wall, medpy_cpu = timed(score_with_medpy, reference, prediction, labels, spacing)

    finite = np.isfinite(ours) & np.isfinite(theirs)
    same_nan = np.array_equal(np.isnan(ours), np.isnan(theirs))
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-12)
    worst = np.nanmax(np.where(finite, relative, np.nan), axis=1)
    print(f"{'':48s}{'wall':>10s}{'CPU':>10s}")
    print(f"{'synthseg_bids.core.metrics (Dice + HD95 + MSD)':48s}{ours_wall:9.2f}s{ours_cpu:9.2f}s")
    print(f"{'medpy per-label loop (dc + hd95 + assd)':48s}{medpy_wall:9.2f}s{medpy_cpu:9.2f}s")
    print(f"speed-up: {medpy_wall / ours_wall:.1f}x wall, {medpy_cpu / ours_cpu:.1f}x CPU")
    print("largest relative difference: "
          + ", ".join(f"{name} {value:.2e}" for name, value in zip(("dice", "hd95", "msd"), worst))
          + f" (NaN pattern identical: {same_nan})")
    print(f"mean over structures: dice {np.nanmean(ours[0]):.4f}, hd95 {np.nanmean(ours[1]):.3f} mm, "
          f"msd {np.nanmean(ours[2]):.3f} mm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
