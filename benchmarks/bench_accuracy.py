"""Benchmark of the accuracy/time/memory trade-off of prediction: Dice, seconds per scan and peak RSS.

Each variant (prediction settings: windows, test-time ensemble, precision) segments the same
scans in a fresh subprocess (peak resident memory = ``VmHWM`` of that process), after
one untimed warm-up segmentation of the MNI152 scan (TensorFlow traces its graphs then), so
the seconds are steady-state. The scans:

- the accuracy scans of :data:`synthseg_bids.generator.scans.ACCURACY_SCANS` (whole 256^3
  synthetic heads: T2-like stored LIA, T1-like with 5 mm slices stored RAS), generated once
  into ``--work`` from the SynthSeg label maps (``--data``); mean Dice over the 32
  foreground structures against their true labels, on the scan's own grid;
- nilearn's MNI152 T1 (1 mm): Dice of white matter and grey matter (label groups of
  ``evaluate-model``) against the template's tissue maps > 0.5.

Variants (``--variants``; ``old-*`` are earlier defaults, expressed as settings):

- ``old-patches``: float32, flip, no shifts, ``max_voxels`` 192^3 (large heads in 8 patches);
- ``old-whole``: float32, flip, no shifts, whole window (``max_voxels`` 224^3);
- ``f32-shift2``: float32, flip, 2 shifted windows;
- ``bf16-whole``, ``bf16-patches``, ``bf16-shift2``, ``bf16-shift3``: the same in bfloat16;
- ``default``: today's :class:`~synthseg_bids.inference.InferenceSettings`.

Then, for each pair of variants that differ only in precision, the bfloat16/float32
agreement: equal labels among brain voxels (voxels labelled by either), the largest
relative difference of a structure's volume (structures above 1 ml), the mean-Dice
difference and the ratio of network seconds.

Usage::

    python benchmarks/bench_accuracy.py --threads 2                     # all variants
    python benchmarks/bench_accuracy.py --threads 2 --variants old-whole default
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthseg"
#: name -> InferenceSettings fields.
VARIANTS = {
    "old-patches": {"precision": "float32", "shifts": 1, "max_voxels": 192**3},
    "old-whole": {"precision": "float32", "shifts": 1},
    "f32-shift2": {"precision": "float32", "shifts": 2},
    "bf16-patches": {"precision": "bfloat16", "shifts": 1, "max_voxels": 192**3},
    "bf16-whole": {"precision": "bfloat16", "shifts": 1},
    "bf16-shift2": {"precision": "bfloat16", "shifts": 2},
    "bf16-shift3": {"precision": "bfloat16", "shifts": 3},
    "bf16-shift2-patches": {"precision": "bfloat16", "shifts": 2, "max_voxels": 192**3},
    "default": {},
}
WM = (2, 41, 7, 46)
GM = (3, 42, 8, 47, 10, 11, 12, 13, 17, 18, 26, 28, 49, 50, 51, 52, 53, 54, 58, 60)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="SynthSeg data folder (training_label_maps, ...)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_accuracy"), help="scans, labels, results")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--scans", nargs="+", help="only these scans (names: t2_lia, t1_5mm, mni152)")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: all cores)")
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def make_scans(args) -> list[tuple[str, Path, Path | None]]:
    """(name, scan, true labels or None) of every scan, generated once into ``--work/scans``."""
    import nibabel as nib
    from nilearn import datasets

    from synthseg_bids.generator.scans import ACCURACY_SCANS, synthetic_scan

    folder = args.work / "scans"
    folder.mkdir(parents=True, exist_ok=True)
    scans = []
    for recipe in ACCURACY_SCANS:
        scan, truth = folder / f"{recipe.name}_scan.nii.gz", folder / f"{recipe.name}_dseg.nii.gz"
        if not (scan.exists() and truth.exists()):
            scan, truth = synthetic_scan(recipe, args.data / "training_label_maps",
                                         args.data / "labels_classes_priors", folder)
        scans.append((recipe.name, scan, truth))
    mni = folder / "mni152_scan.nii.gz"
    if not mni.exists():
        nib.save(datasets.load_mni152_template(resolution=1), mni)
    scans.append(("mni152", mni, None))
    return scans


def run_child(args) -> None:
    """Segment every scan with one variant; write labels and a JSON of timings and volumes."""
    from synthseg_bids.core.io import save_image
    from synthseg_bids.inference import InferenceSettings, Segmenter

    variant = args.child
    scans = json.loads(os.environ["BENCH_SCANS"])
    settings = InferenceSettings(device="cpu", threads=args.threads, **VARIANTS[variant])
    segmenter = Segmenter(args.model, settings)
    segmenter.segment(scans[-1][1])  # warm-up (MNI152, the smallest): graphs traced
    out = args.work / "labels" / variant
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for name, scan, _ in scans:
        tic = time.perf_counter()
        result = segmenter.segment(scan)
        seconds = time.perf_counter() - tic
        save_image(result.labels.data, result.labels.affine, out / f"{name}.nii.gz", dtype=np.int16)
        records.append({"name": name, "seconds": seconds, "network": result.timings["network"],
                        "volumes": result.volumes})
    # VmHWM: this process's own peak (ru_maxrss starts from the forking parent's, kept across exec)
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
    summary = {"variant": variant, "precision": segmenter.network.precision, "settings": settings.to_dict(),
               "label_values": segmenter.label_table.values.tolist(), "scans": records, "peak_rss_mib": peak}
    (out / "result.json").write_text(json.dumps(summary))


def mean_dice(truth: np.ndarray, labels: np.ndarray, values) -> float:
    from synthseg_bids.core.metrics import dice_scores

    return float(np.nanmean(dice_scores(truth, labels, values)[1:]))


def mni_dice(scan: Path, labels: np.ndarray) -> tuple[float, float]:
    import nibabel as nib
    from nilearn import datasets

    from synthseg_bids.core.metrics import dice_scores
    from synthseg_bids.core.resample import resample_to_grid

    image = nib.load(scan)
    scores = []
    for loader, group in ((datasets.load_mni152_wm_template, WM), (datasets.load_mni152_gm_template, GM)):
        ref = loader(resolution=1)
        tissue = resample_to_grid(np.asarray(ref.get_fdata(), np.float32), ref.affine, image.shape, image.affine) > 0.5
        scores.append(float(dice_scores(tissue.astype(np.uint8), np.isin(labels, group).astype(np.uint8), [1])[0]))
    return scores[0], scores[1]


def score(args, scans, variant: str) -> dict:
    import nibabel as nib

    result = json.loads((args.work / "labels" / variant / "result.json").read_text())
    row = {"variant": variant, "precision": result["precision"], "shifts": result["settings"]["shifts"],
           "max_voxels": round(result["settings"]["max_voxels"] ** (1 / 3))}
    synthetic = []
    for (name, scan, truth), record in zip(scans, result["scans"]):
        labels = np.asarray(nib.load(args.work / "labels" / variant / f"{name}.nii.gz").dataobj)
        if truth is None:
            row["mni_wm"], row["mni_gm"] = mni_dice(scan, labels)
            continue
        reference = np.asarray(nib.load(truth).dataobj)
        row[f"dice_{name}"] = mean_dice(reference, labels, result["label_values"])
        synthetic.append(record)
    row["mean_dice"] = float(np.mean([row[f"dice_{name}"] for name, _, truth in scans if truth is not None]))
    row["s_per_scan"] = float(np.mean([r["seconds"] for r in synthetic]))
    row["network_s"] = float(np.mean([r["network"] for r in synthetic]))
    row["peak_rss_mib"] = result["peak_rss_mib"]
    return row


def agreement(args, scans, bf16: str, f32: str, rows: dict) -> dict:
    """bfloat16 vs float32 labels and volumes of the same variant."""
    import nibabel as nib

    equal, brain, worst_volume = 0, 0, 0.0
    one = json.loads((args.work / "labels" / bf16 / "result.json").read_text())["scans"]
    two = json.loads((args.work / "labels" / f32 / "result.json").read_text())["scans"]
    per_scan = {}
    for (name, _, _), a, b in zip(scans, one, two):
        x = np.asarray(nib.load(args.work / "labels" / bf16 / f"{name}.nii.gz").dataobj)
        y = np.asarray(nib.load(args.work / "labels" / f32 / f"{name}.nii.gz").dataobj)
        inside = (x > 0) | (y > 0)
        equal += int(np.count_nonzero(x[inside] == y[inside]))
        brain += int(np.count_nonzero(inside))
        per_scan[name] = float(np.mean(x[inside] == y[inside]))
        for key, volume in b["volumes"].items():
            if volume > 1000.0:
                worst_volume = max(worst_volume, abs(a["volumes"][key] - volume) / volume)
    return {"pair": f"{bf16} / {f32}", "equal_brain_labels": equal / brain, "worst_scan": min(per_scan.values()),
            "max_volume_difference": worst_volume,
            "mean_dice_difference": rows[bf16]["mean_dice"] - rows[f32]["mean_dice"],
            "network_time_ratio": rows[bf16]["network_s"] / rows[f32]["network_s"]}


def markdown(frame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return 0
    if not (args.data / "training_label_maps").is_dir():
        print(f"bench_accuracy: error: no SynthSeg label maps in {args.data} (--data)", file=sys.stderr)
        return 1
    import pandas as pd

    scans = make_scans(args)
    if args.scans:
        scans = [scan for scan in scans if scan[0] in args.scans]
    env = {**os.environ, "BENCH_SCANS": json.dumps([(n, str(s), str(t) if t else None) for n, s, t in scans])}
    rows = {}
    for variant in args.variants:
        command = [sys.executable, "-P", __file__, "--child", variant, "--work", str(args.work)]
        command += ["--threads", str(args.threads)] if args.threads else []
        command += ["--model", args.model] if args.model else []
        tic = time.perf_counter()
        subprocess.run(command, env=env, check=True)
        rows[variant] = score(args, scans, variant)
        print(f"{variant}: mean Dice {rows[variant]['mean_dice']:.4f}, {rows[variant]['s_per_scan']:.1f} s/scan, "
              f"{rows[variant]['peak_rss_mib']:.0f} MiB ({time.perf_counter() - tic:.0f} s)", flush=True)
    frame = pd.DataFrame(list(rows.values()))
    print("\n## Accuracy, time and memory per variant\n")
    print(markdown(frame))
    pairs = [(b, f) for b, f in (("bf16-whole", "old-whole"), ("bf16-patches", "old-patches"),
                                 ("bf16-shift2", "f32-shift2")) if b in rows and f in rows]
    if pairs:
        print("\n## bfloat16 against float32\n")
        print(markdown(pd.DataFrame([agreement(args, scans, b, f, rows) for b, f in pairs])))
    frame.to_csv(args.work / "bench_accuracy.tsv", sep="\t", index=False, float_format="%.4f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
