"""Benchmark: peak memory of segmenting one scan, measured vs the scheduler's estimate.

Each case runs the participant level's segmentation step (the ``SynthSeg`` interface's work:
:meth:`Segmenter.segment` then :func:`write_result`, default :class:`InferenceSettings`, the
shipped model, Nipype imported) in a fresh subprocess, which reports its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``: TensorFlow's allocations included) and its
network window. The scans are nilearn's MNI152 T1 on other grids (the head stays the same: the
network window is the head's box):

- ``mni1``: the template's own 197 x 233 x 189 grid at 1 mm;
- ``pad256``: zero-padded to 256^3 at 1 mm (more input and conformed voxels);
- ``mm07``: resampled to 0.7 mm (more input voxels, same 1 mm volume);
- ``mm2``: resampled to 2 mm (fewer input voxels);
- ``crop64``, ``crop``, ``crop128``: ``mni1`` with ``crop = 64^3, 96^3, 128^3`` (smaller
  network windows);
- ``patched128``: ``crop128`` with the network run in 64^3 patches (the window's
  posteriors as in ``crop128``, the network's activations of a 64^3 window);
- ``patched``: ``mni1`` with the network run in 96^3 patches;
- ``post``: ``mni1`` with posteriors on the input grid;
- ``big``: the head scaled by 1.15 (about the largest training head) on a 1 mm grid: its
  window is above the default ``max_voxels``, so the network runs in patches as it does
  for such heads.

The figures fit the coefficients of
:func:`synthseg_bids.inference.memory.segmentation_memory_bytes` (bytes per voxel of the
input grid, of the 1 mm volume, of the network window, per posterior channel) and print
the estimate next to each measurement (ratio estimate / measured: must be >= 1, and not
much more; the ``patched`` cases excepted: windows above ``max_voxels`` are not fitted).

Usage::

    python benchmarks/bench_memory.py --threads 2                  # all cases
    python benchmarks/bench_memory.py --threads 2 --cases mni1 post
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

#: name -> (voxel mm, cube edge or None for the template's extent, InferenceSettings fields, posteriors?)
CASES = {
    "crop64": (1.0, None, {"crop": [64, 64, 64]}, False),
    "crop": (1.0, None, {"crop": [96, 96, 96]}, False),
    "crop128": (1.0, None, {"crop": [128, 128, 128]}, False),
    "patched128": (1.0, None, {"crop": [128, 128, 128], "max_voxels": 64**3, "patch_size": 64,
                               "patch_overlap": 16}, False),
    "mm2": (2.0, None, {}, False),
    "patched": (1.0, None, {"max_voxels": 96**3, "patch_size": 96, "patch_overlap": 16}, False),
    "mni1": (1.0, None, {}, False),
    "post": (1.0, None, {}, True),
    "pad256": (1.0, 256, {}, False),
    "mm07": (0.7, None, {}, False),
    "big": (1.0, None, {}, False),
    "bigwhole": (1.0, None, {"max_voxels": 224**3}, False),
}

#: name -> factor by which the head is enlarged (1 for the other cases).
HEAD_SCALE = {"big": 1.15, "bigwhole": 1.15}

WORKER = r"""
import json, os, resource, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import nipype  # the segmentation node runs inside a Nipype worker
from synthseg_bids.core.io import load_image
from synthseg_bids.inference import InferenceSettings, Segmenter, prepare_scan, write_result
scan, out, threads, fields, posteriors = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
settings = InferenceSettings.from_dict({"device": "cpu", "threads": threads or None, **json.loads(fields)})
segmenter = Segmenter(None, settings)
result = segmenter.segment(scan, posteriors=posteriors)
write_result(result, labels=os.path.join(out, "dseg.nii.gz"), volumes=os.path.join(out, "volumes.csv"),
             posteriors=os.path.join(out, "probseg.nii.gz") if posteriors else None)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
del result
window = prepare_scan(load_image(scan), 1.0, segmenter.network.size_multiple, settings).window_shape
print(json.dumps({"peak_bytes": peak, "window": [int(s) for s in window]}))
"""


def make_scan(path: Path, voxel: float, edge: int | None, scale: float = 1.0) -> tuple[tuple[int, ...], np.ndarray]:
    """The MNI152 T1 on a grid of ``voxel`` mm (the template's extent, or an ``edge``^3 cube); shape, affine.

    ``scale`` enlarges the head: the template is sampled every ``voxel / scale`` mm and
    the samples stored ``voxel`` mm apart.
    """
    from nilearn import datasets

    from synthseg_bids.core.io import save_image
    from synthseg_bids.core.resample import resample_to_grid

    t1 = datasets.load_mni152_template(resolution=1)
    data, source = np.asarray(t1.get_fdata(), np.float32), t1.affine
    extent = np.array(data.shape) * np.abs(np.diag(source)[:3])
    shape = tuple(int(s) for s in (np.full(3, edge) if edge else np.round(extent * scale / voxel)))
    centre = source[:3, :3] @ ((np.array(data.shape) - 1) / 2) + source[:3, 3]

    def grid(step: float) -> np.ndarray:
        affine = np.diag([step, step, step, 1.0])
        affine[:3, 3] = centre - step * (np.array(shape) - 1) / 2
        return affine

    affine, sampled = grid(voxel), grid(voxel / scale)
    if voxel == 1.0 and scale == 1.0:  # on the template's grid: 1 mm copies exactly
        origin = np.linalg.solve(source, [*affine[:3, 3], 1.0])
        affine[:3, 3] = (source @ np.r_[np.round(origin[:3]), 1.0])[:3]
        sampled = affine
    save_image(resample_to_grid(data, source, shape, sampled, order=1, cval=0.0).astype(np.float32), affine, path)
    return shape, affine


def measure(scan: Path, out: Path, threads: int, fields: dict, posteriors: bool) -> dict:
    """``{"peak_bytes", "window"}`` of one segmentation in a fresh child process."""
    # -P: the current folder is not put on sys.path, so the child imports the same package as
    # this process (the installed one, or PYTHONPATH's), not a source tree it is started from
    done = subprocess.run([sys.executable, "-P", "-c", WORKER, str(scan), str(out), str(threads), json.dumps(fields),
                           "1" if posteriors else "0"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker failed (exit status {done.returncode}; -9: killed, e.g. out of memory):\n"
                         f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow CPU threads (0: its default)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    args = parser.parse_args(argv)
    from synthseg_bids.inference.memory import segmentation_memory_bytes

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [c for c in CASES if c in args.cases]:
            voxel, edge, fields, posteriors = CASES[name]
            scan = Path(tmp) / f"{name}.nii.gz"
            shape, affine = make_scan(scan, voxel, edge, HEAD_SCALE.get(name, 1.0))
            measured = measure(scan, Path(tmp), args.threads, fields, posteriors)
            peak = measured["peak_bytes"]
            estimate = segmentation_memory_bytes(shape, affine, 33, posteriors=posteriors, crop=fields.get("crop"))
            rows.append({"case": name, "shape": "x".join(map(str, shape)), "voxel_mm": voxel, "settings": fields,
                         "posteriors": posteriors, "window": "x".join(map(str, measured["window"])), "peak_gib": peak / 2**30, "estimate_gib": estimate / 2**30,
                         "ratio": estimate / peak})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| case | grid | peak (GiB) | estimate (GiB) | estimate / peak |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['shape']} at {r['voxel_mm']:g} mm | {r['peak_gib']:.2f} | "
              f"{r['estimate_gib']:.2f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
