"""Benchmark of ``synthseg-bids segment``: one call on a folder versus one call per scan.

Writes N synthetic heads (ellipsoid phantoms with seeded texture, ``--size``^3 at 1 mm)
into a temporary folder, then times, each as a fresh subprocess (``python -m
synthseg_bids.cli.main segment ...``), so that Python start-up, the TensorFlow import and
model loading are counted as a user sees them:

- ``folder``: one call on the folder (model loaded once);
- ``separate``: N calls, one per scan.

Prints the total wall time of each, seconds per scan, the per-scan lines of the folder
call (the command's own ``[i/N] ... s`` progress), and the ratio separate / folder.
The model is the shipped one when installed, otherwise the default architecture with
random weights (same cost per scan).

Usage::

    python benchmarks/bench_segment_cli.py --scans 4 --size 96 --device cpu --threads 2
    python benchmarks/bench_segment_cli.py --scans 4 --size 96 --device gpu
    python benchmarks/bench_segment_cli.py --scans 4 --size 96 --device cpu --threads 2 --fast --crop 96
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("NIPYPE_NO_ET", "1")


def make_scans(folder: Path, n: int, size: int) -> list[Path]:
    from scipy import ndimage

    from synthseg_bids.core.io import save_image

    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij"))
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        axes = np.array([0.75, 0.9, 0.8]) * (1 + 0.05 * rng.standard_normal(3))
        r = np.sqrt(((grid / axes[:, None, None, None]) ** 2).sum(0))
        data = np.select([r < 0.35, r < 0.6, r < 0.8, r < 0.95], [0.2, 1.0, 0.6, 0.3], 0.0).astype(np.float32)
        texture = ndimage.gaussian_filter(rng.standard_normal(data.shape), 2.0).astype(np.float32)
        data = 100 * data * (1 + 0.5 * texture / texture.std())
        affine = np.eye(4)
        affine[:3, 3] = -size / 2
        paths.append(save_image(data, affine, folder / f"sub-{i:02d}_T1w.nii.gz"))
    return paths


def make_model(path: Path) -> tuple[Path, str]:
    from synthseg_bids.inference import default_model_path

    if default_model_path().is_file():
        return default_model_path(), "shipped model"
    from synthseg_bids.core.labels import default_label_table
    from synthseg_bids.network import ModelInfo, NetworkSettings, build_unet, save_model

    settings = NetworkSettings()
    save_model(path, build_unet(settings, 33, seed=0), ModelInfo(network=settings, label_table=default_label_table()))
    return path, "default architecture, random weights"


def segment(args: list[str]) -> tuple[float, str]:
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "synthseg_bids.cli.main", "segment", *args],
                          capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if done.returncode != 0:
        sys.exit(f"segment {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return wall, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--size", type=int, default=96, help="edge of the cubic scans (voxels of 1 mm)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--fast", action="store_true", help="pass --fast (no flip augmentation)")
    parser.add_argument("--crop", type=int, help="pass --crop N (network input N^3 instead of >= 128^3)")
    parser.add_argument("--model", type=Path, help="model file (default: shipped model or random weights)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scans = make_scans(tmp / "in", args.scans, args.size)
        model, description = (args.model, str(args.model)) if args.model else make_model(tmp / "model.npz")
        options = ["--model", str(model), "--device", args.device]
        if args.threads:
            options += ["--threads", str(args.threads)]
        if args.fast:
            options.append("--fast")
        if args.crop:
            options += ["--crop", str(args.crop)]

        folder_wall, log = segment(["--i", str(tmp / "in"), "--o", str(tmp / "out_folder"),
                                    "--vol", str(tmp / "folder.csv"), *options])
        per_scan = [float(s) for s in re.findall(r"^\[\d+/\d+\] \S+ ([\d.]+) s", log, flags=re.M)]
        separate = []
        for scan in scans:
            wall, _ = segment(["--i", str(scan), "--o", str(tmp / "out_separate"),
                               "--vol", str(tmp / "separate.csv"), *options])
            separate.append(wall)

    n = args.scans
    print(f"{n} scans of {args.size}^3 at 1 mm; model: {description}; device {args.device}, threads "
          f"{args.threads or 'default'}{', --fast' if args.fast else ''}"
          f"{f', --crop {args.crop}' if args.crop else ''}")
    print(f"{'':24}{'total s':>10}{'s / scan':>10}")
    print(f"{'one call, folder':24}{folder_wall:10.1f}{folder_wall / n:10.1f}")
    print(f"{'one call per scan':24}{sum(separate):10.1f}{sum(separate) / n:10.1f}")
    print(f"per-scan lines of the folder call (segmentation only): {', '.join(f'{s:.1f}' for s in per_scan)} s")
    print(f"separate calls: {', '.join(f'{s:.1f}' for s in separate)} s")
    overhead = sum(separate) / n - (np.mean(per_scan) if per_scan else 0.0)
    print(f"ratio separate / folder: {sum(separate) / folder_wall:.2f}x; start-up + TF import + model load "
          f"paid per separate call: ~{overhead:.1f} s")


if __name__ == "__main__":
    main()
