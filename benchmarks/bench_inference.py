"""Benchmark of prediction: seconds per scan by stage, network-only time, peak memory.

Each configuration runs in its own subprocess so that its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes TensorFlow's allocations)
is measured alone. The scan is the MNI152 T1 (nilearn's bundled template) resampled onto a
centred ``--size``^3 grid of ``--voxel`` mm (default 256^3 at 1 mm, i.e. zero-padded), or a
synthetic ellipsoid phantom when nilearn is missing.

Configurations:

- ``many``: one process, ``Segmenter`` loaded once, N scans in order, each next one
  segmented ahead (``segment_ahead``) while the current one is written,
  each result written (labels + volumes CSV); per-stage seconds per scan;
- ``network``: the network alone on the scan's network input (one pass, after one
  warm-up pass), for its peak memory;
- the reference for the overhead target (everything else, i.e. a scan's total time minus
  the network's passes, <= 25 % of them) is timed inside ``many``, in the same process:
  two bare network passes (``Network.predict``) right after the scans, so that both see
  about the same machine load (rerun when the machine is busy: the ratio moves with it);
- ``separate``: N processes each loading the model and segmenting one scan.

Usage::

    python benchmarks/bench_inference.py --device cpu --threads 2 --scans 2
    python benchmarks/bench_inference.py --device gpu --scans 4 --model model.npz
    python benchmarks/bench_inference.py --threads 2 --scans 1 --size 512 --voxel 0.5 --skip-separate
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_scan(path: Path, size: int, voxel: float = 1.0) -> str:
    """Write the benchmark scan (``size``^3 voxels of ``voxel`` mm, centred); returns its description."""
    from synthseg_bids.core.io import save_image
    from synthseg_bids.core.resample import resample_to_grid

    try:
        from nilearn import datasets

        t1 = datasets.load_mni152_template(resolution=1)
        data, source_affine = np.asarray(t1.get_fdata(), np.float32), t1.affine
        source = "MNI152 T1 (nilearn)"
    except Exception:  # nilearn missing or without its bundled templates
        grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 180)] * 3, indexing="ij"))
        r = np.sqrt(((grid / np.array([0.75, 0.9, 0.8])[:, None, None, None]) ** 2).sum(0))
        data = np.select([r < 0.6, r < 0.8, r < 0.95], [1.0, 0.6, 0.3], 0.0).astype(np.float32)
        source_affine = np.eye(4)
        source_affine[:3, 3] = -90
        source = "synthetic ellipsoid phantom (nilearn unavailable)"
    centre = source_affine[:3, :3] @ ((np.array(data.shape) - 1) / 2) + source_affine[:3, 3]
    origin = np.linalg.solve(source_affine, [*(centre - voxel * (size - 1) / 2), 1.0])
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = (source_affine @ np.r_[np.round(origin[:3]), 1.0])[:3]  # on the source grid: 1 mm copies exactly
    out = resample_to_grid(data, source_affine, (size,) * 3, affine, order=1, cval=0.0)
    save_image(out.astype(np.float32), affine, path)
    return f"{source}, resampled to {size}^3 at {voxel:g} mm"


def make_model(path: Path) -> tuple[str, bool]:
    """(model path, shipped?): the shipped model, or a random default-architecture one at ``path``."""
    from synthseg_bids.inference import default_model_path

    if default_model_path().is_file():
        return str(default_model_path()), True
    from synthseg_bids.core.labels import default_label_table
    from synthseg_bids.network import ModelInfo, NetworkSettings, build_unet, save_model

    settings = NetworkSettings()
    save_model(path, build_unet(settings, 33, seed=0), ModelInfo(network=settings, label_table=default_label_table()))
    return str(path), False


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def worker(args: argparse.Namespace) -> dict:
    """One configuration, in this process."""
    from synthseg_bids.inference import InferenceSettings, Segmenter, write_result
    from synthseg_bids.inference.preprocess import prepare_scan
    from synthseg_bids.core.io import load_image

    settings = InferenceSettings(device=args.device, threads=args.threads, flip=not args.no_flip)
    tic = time.perf_counter()
    segmenter = Segmenter(args.model, settings)
    load = time.perf_counter() - tic
    report = {"config": args.worker, "model_load_s": load, "device": segmenter.network.device}
    if args.worker == "network":
        image = load_image(args.scan)
        prepared = prepare_scan(image, segmenter.network.resolution_mm, segmenter.network.size_multiple, settings)
        batch = prepared.network_input()

        segmenter.network.predict(batch)  # warm-up (tracing, allocations)
        report.update(network_input=list(prepared.window_shape), network_pass_s=_network_passes(segmenter, batch, 1))
    else:
        scans = [args.scan] * args.scans
        out = Path(args.out)
        per_scan = []
        tic_all = last = time.perf_counter()
        for i, scan in enumerate(scans):
            result = segmenter.segment(scan)
            if i + 1 < len(scans):
                segmenter.segment_ahead(scans[i + 1])
            tic = time.perf_counter()
            write_result(result, labels=out / f"scan{i}_dseg.nii.gz", volumes=out / f"scan{i}_volumes.csv")
            done = time.perf_counter()
            # interval: wall time from the previous scan written to this one (stages may overlap)
            timings = dict(result.timings, write=done - tic, interval=done - last)
            last = done
            per_scan.append(timings)
        report.update(scans=len(scans), wall_s=time.perf_counter() - tic_all + load, per_scan=per_scan)
        report["peak_rss_scans_mib"] = _peak_mib()  # before the reference passes below add theirs
        image = load_image(args.scan)
        batch = prepare_scan(image, segmenter.network.resolution_mm, segmenter.network.size_multiple,
                             settings).network_input()
        del result, image
        report["network_pass_s"] = _network_passes(segmenter, batch, 2)
    report["peak_rss_mib"] = _peak_mib()
    return report


def _network_passes(segmenter, batch: np.ndarray, repeats: int) -> float:
    """Mean seconds of a bare network pass (``Network.predict``: the network and the copy of its output)."""
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        segmenter.network.predict(batch)
        times.append(time.perf_counter() - tic)
    return float(np.mean(times))


def run_worker(config: str, args: argparse.Namespace, scans: int) -> dict:
    command = [sys.executable, __file__, "--worker", config, "--scan", args.scan, "--model", args.model,
               "--device", args.device, "--scans", str(scans), "--out", args.out]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.no_flip:
        command += ["--no-flip"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{config} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file (default: the shipped one, else a random default-size net)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow CPU threads")
    parser.add_argument("--scans", type=int, default=2, help="scans per run (one process vs separate processes)")
    parser.add_argument("--size", type=int, default=256, help="edge of the cubic scan, in voxels")
    parser.add_argument("--voxel", type=float, default=1.0, help="voxel size of the scan (mm), e.g. 0.5 with --size 512")
    parser.add_argument("--no-flip", action="store_true", help="no flip augmentation")
    parser.add_argument("--skip-separate", action="store_true", help="do not run the N separate processes")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scan", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        args.scan = str(tmp / "scan.nii.gz")
        args.out = str(tmp / "out")
        scan_text = make_scan(Path(args.scan), args.size, args.voxel)
        if args.model is None:
            args.model, shipped = make_model(tmp / "random_model.npz")
            model_text = (f"shipped model {args.model}" if shipped else
                          "RANDOMLY INITIALISED default-architecture network (no shipped model)")
        else:
            model_text = f"model {args.model}"
        print(f"scan: {scan_text}; {model_text}; device {args.device}, threads {args.threads}, "
              f"flip {'off' if args.no_flip else 'on'}")
        network = run_worker("network", args, 1)
        many = run_worker("many", args, args.scans)
        stages = ["load", "preprocess", "network", "postprocess", "write"]
        steady = many["per_scan"][1:] or many["per_scan"]
        mean = {k: float(np.mean([t[k] for t in steady])) for k in stages}
        passes = 1 if args.no_flip else 2
        network_s = passes * many["network_pass_s"]  # timed in the same process as the scans
        overhead = sum(mean.values()) - network_s
        print(f"device used: {many['device']}; network input {network['network_input']}")
        print(f"model load (once): {many['model_load_s']:.2f} s")
        print("per scan (mean over scans after the first): " + ", ".join(f"{k} {mean[k]:.2f} s" for k in stages))
        print(f"network only, one pass (same process, after the scans): {many['network_pass_s']:.2f} s; "
              f"x{passes} passes = {network_s:.2f} s (separate process: {network['network_pass_s']:.2f} s a pass)")
        interval = float(np.mean([t["interval"] for t in steady]))
        print(f"everything but the network (sum of a scan's stages - network passes): {overhead:.2f} s = "
              f"{100 * overhead / network_s:.0f} % of the network time")
        print(f"wall time per scan (scan written to scan written): {interval:.2f} s; minus the network passes: "
              f"{interval - network_s:.2f} s = {100 * (interval - network_s) / network_s:.0f} % of the network time")
        print(f"peak RSS: one process {many['peak_rss_scans_mib']:.0f} MiB (with the reference passes after it "
              f"{many['peak_rss_mib']:.0f} MiB), network only {network['peak_rss_mib']:.0f} MiB")
        print(f"{args.scans} scans in one process: {many['wall_s']:.1f} s")
        report = {"scan": scan_text, "model": model_text, "network": network, "many": many, "mean_per_scan": mean,
                  "overhead_s": overhead, "overhead_ratio": overhead / network_s,
                  "interval_s": interval, "wall_overhead_ratio": (interval - network_s) / network_s}
        if not args.skip_separate:
            tic = time.perf_counter()
            separate = [run_worker("many", args, 1) for _ in range(args.scans)]
            wall = time.perf_counter() - tic
            print(f"{args.scans} separate processes: {wall:.1f} s (incl. interpreter/TensorFlow start-up)")
            report["separate_wall_s"] = wall
            report["separate"] = separate
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
