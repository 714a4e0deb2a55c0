"""Benchmark of the participant level: scans per hour and the per-scan cost of Nipype/pybids.

Writes the example BIDS dataset with ``--subjects`` subjects (``make_example_dataset``:
sub-01 has three scans, every other subject one; 1 mm, the brain's field of view) and
times, each in a fresh subprocess so that start-up is counted as a user sees it:

- ``reference``: the segmentation itself, without Nipype or pybids: one process imports
  the package, loads the model once (``Segmenter``) and segments every scan, writing the
  label map and volumes (``write_result``);
- ``multiproc1``: ``synthseg-bids bids out participant`` with Nipype's MultiProc plugin
  and one process (``--use-plugin``; one segmentation at a time on ``--threads`` threads);
- ``multiproc2``: MultiProc with two processes (``--nprocs 2 --omp-nthreads 1``: two
  scans at a time, one thread each).

For the participant runs the node durations recorded by Nipype (``result_*.pklz``) are
summed by node (segment, figure, the rest). Printed per configuration: wall time, scans
per hour, and

- overhead vs the reference: (participant wall - reference wall) / scans, and that as a
  percentage of the reference's seconds per scan (the issue's target: <= 10 %);
- framework time (multiproc1 only): wall - sum of all node durations, i.e. what Nipype's
  scheduling, pybids' indexing, process start-up and the reports cost beyond the work of
  the nodes themselves.

Usage::

    python benchmarks/bench_participant.py --subjects 2 --threads 2
    python benchmarks/bench_participant.py --subjects 4 --resolution 1.0 --keep /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("NIPYPE_NO_ET", "1")

CONFIGS = {
    "multiproc1": lambda threads: ["--use-plugin", "{multiproc1}", "--omp-nthreads", str(threads)],
    "multiproc2": lambda threads: ["--nprocs", "2", "--omp-nthreads", "1"],
}


def reference_worker(model: str, threads: int, scans: list[str], out: Path) -> dict:
    """The bare segmentation of ``scans`` in this process (model loaded once)."""
    tic_all = time.perf_counter()
    from synthseg_bids.inference import InferenceSettings, Segmenter, write_result

    segmenter = Segmenter(model, InferenceSettings(device="cpu", threads=threads))
    startup = time.perf_counter() - tic_all
    per_scan = []
    tic = time.perf_counter()
    for i, scan in enumerate(scans):
        result = segmenter.segment(scan)
        if i + 1 < len(scans):
            segmenter.segment_ahead(scans[i + 1])  # segmented while this one is written
        write_result(result, labels=out / f"scan{i}_dseg.nii.gz", volumes=out / f"scan{i}_volumes.csv")
        now = time.perf_counter()
        per_scan.append(now - tic)
        tic = now
    return {"startup_s": startup, "per_scan_s": per_scan}


def node_durations(work: Path) -> dict[str, float]:
    """Seconds summed by node name over the Nipype result files of a work folder."""
    from nipype.pipeline.engine.utils import load_resultfile

    totals: dict[str, float] = defaultdict(float)
    for path in work.rglob("result_*.pklz"):
        runtime = load_resultfile(str(path)).runtime
        totals[path.parent.name] += float(getattr(runtime, "duration", 0.0) or 0.0)
    return dict(totals)


def run(cmd: list[str], what: str) -> float:
    tic = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=2, help="subjects in the dataset (scans = subjects + 2)")
    parser.add_argument("--resolution", type=float, default=1.0, help="voxel size of the scans (mm)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of one segmentation")
    parser.add_argument("--model", help="model file (default: the shipped one)")
    parser.add_argument("--configs", default="reference,multiproc1,multiproc2",
                        help="comma-separated subset of reference, multiproc1, multiproc2")
    parser.add_argument("--keep", type=Path, help="folder for the dataset and outputs (default: a temporary one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scans", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(reference_worker(args.model, args.threads, args.scans, args.out)))
        return

    from synthseg_bids.cli.example_data import make_example_dataset
    from synthseg_bids.inference import default_model_path

    model = args.model or str(default_model_path())
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(configs) - {"reference", *CONFIGS}
    if unknown:
        parser.error(f"unknown --configs {sorted(unknown)}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_participant_"))
    root.mkdir(parents=True, exist_ok=True)
    bids = make_example_dataset(root / "bids", resolution_mm=args.resolution, n_subjects=args.subjects, force=True)
    scans = sorted(str(p) for p in bids.rglob("*.nii.gz"))
    plugin_file = root / "multiproc1.yml"
    plugin_file.write_text("plugin: MultiProc\nplugin_args: {n_procs: 1, raise_insufficient: false}\n")
    print(f"{len(scans)} scans ({args.subjects} subjects, {args.resolution} mm), model {model}, "
          f"{args.threads} thread(s) per segmentation, {os.cpu_count()} CPU(s)")

    results: dict[str, dict] = {}
    if "reference" in configs:
        out = root / "reference"
        out.mkdir(exist_ok=True)
        cmd = [sys.executable, __file__, "--worker", "--model", model, "--threads", str(args.threads),
               "--out", str(out), "--scans", *scans]
        tic = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - tic
        if done.returncode != 0:
            raise SystemExit(f"reference failed:\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        results["reference"] = {"wall_s": wall, **report}
        print(f"reference: {wall:.1f} s wall; start-up (imports + model) {report['startup_s']:.1f} s; "
              f"per scan {', '.join(f'{s:.1f}' for s in report['per_scan_s'])} s")

    for name in [c for c in configs if c in CONFIGS]:
        out, work = root / f"out_{name}", root / f"work_{name}"
        for folder in (out, work):
            if folder.exists():
                shutil.rmtree(folder)
        extra = [a.format(multiproc1=plugin_file) for a in CONFIGS[name](args.threads)]
        cmd = [sys.executable, "-m", "synthseg_bids.cli.main", str(bids), str(out), "participant", "--model", model,
               "-w", str(work), *extra]
        wall = run(cmd, name)
        nodes = node_durations(work)
        results[name] = {"wall_s": wall, "nodes_s": nodes}
        done = len(list(out.rglob("*_dseg.nii.gz")))
        if done != len(scans):
            raise SystemExit(f"{name}: {done} of {len(scans)} scans segmented")
        print(f"{name}: {wall:.1f} s wall; node seconds: segment {nodes.get('segment', 0):.1f}, "
              f"figure {nodes.get('figure', 0):.1f}, "
              f"others {sum(v for k, v in nodes.items() if k not in ('segment', 'figure')):.1f}")

    n = len(scans)
    print("\n| configuration | wall (s) | scans/hour | overhead vs reference (s/scan) | % of segmentation |")
    print("|---|---|---|---|---|")
    ref = results.get("reference")
    per_scan_ref = ref["wall_s"] / n if ref else None
    for name, res in results.items():
        row = f"| {name} | {res['wall_s']:.1f} | {3600 * n / res['wall_s']:.0f} |"
        if ref and name != "reference":
            over = (res["wall_s"] - ref["wall_s"]) / n
            row += f" {over:+.2f} | {100 * over / per_scan_ref:+.1f} % |"
        else:
            row += " - | - |"
        print(row)
    if "multiproc1" in results:
        res = results["multiproc1"]
        framework = res["wall_s"] - sum(res["nodes_s"].values())
        print(f"\nmultiproc1 framework time (wall - node durations): {framework:.1f} s in all, "
              f"{framework / n:.2f} s per scan, {100 * framework / res['nodes_s'].get('segment', 1):.1f} % "
              f"of the segment nodes' time")
        if ref:
            print(f"segment node vs bare segmentation, per scan: {res['nodes_s'].get('segment', 0) / n:.1f} s vs "
                  f"{sum(ref['per_scan_s']) / n:.1f} s")
    if args.keep:
        print(f"\nfolder: {root}")
    else:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
