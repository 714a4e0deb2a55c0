"""Benchmark: synthetic pairs per second, and one pair versus one U-Net training step.

Runs :class:`synthseg_bids.generator.LabelsToImage` (default settings, 160^3 output, one
pair per call, one-hot target included) on a real 256^3 training map of the shared data
(``--data``; the benchmark stops with a message when it is absent), then one training step of the
project's U-Net (``synthseg_bids.network.unet.build_unet``, SynthSeg's architecture unless
``--features``/``--levels`` say otherwise; Adam, categorical cross-entropy) on the same
device and backend. On the JAX backend both are ``jit``-compiled (the layer through
``stateless_call``); on TensorFlow the layer runs eagerly and the step through
``train_on_batch``. Compilation/first calls are excluded (warm-up).

Usage::

    PYTHONPATH=. python benchmarks/bench_generator.py [--shape 160] [--unet-shape 160] [--repeats 3]
    KERAS_BACKEND=jax PYTHONPATH=. python benchmarks/bench_generator.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "synthseg"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared SynthSeg data folder")
    parser.add_argument("--shape", type=int, default=160, help="generator output size (voxels per axis)")
    parser.add_argument("--unet-shape", type=int, default=None, help="U-Net input size (default: --shape)")
    parser.add_argument("--features", type=int, default=24, help="U-Net base features (SynthSeg: 24)")
    parser.add_argument("--levels", type=int, default=5, help="U-Net levels (SynthSeg: 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after one warm-up call")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def load_indices(data: Path):
    """(spec, (1, 256, 256, 256) uint8 indices, source description)."""
    from synthseg_bids.generator import GenerationSpec, load_training_maps

    map_path = data / "training_label_maps" / "training_seg_01.nii.gz"
    if not map_path.is_file():
        raise SystemExit(f"bench_generator: {map_path} not found; pass the shared SynthSeg data folder with --data")
    spec = GenerationSpec.from_folder(data / "labels_classes_priors")
    return spec, load_training_maps([map_path], spec).indices, str(map_path)


def timed(fn, repeats: int) -> float:
    """Median wall time (s) of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def generator_fn(layer, indices):
    """A no-argument callable producing one (image, target) pair, blocking until done."""
    import keras
    from keras import ops

    if keras.backend.backend() == "jax":
        import jax

        layer.build(indices.shape)
        state = [[v.value for v in layer.non_trainable_variables]]
        step = jax.jit(lambda s, x: layer.stateless_call([], s, x))
        device_indices = jax.device_put(indices)

        def run():
            (image, target), state[0] = step(state[0], device_indices)
            return jax.block_until_ready((image, target))

        return run
    return lambda: [ops.convert_to_numpy(t) for t in layer(indices)]


def main() -> int:
    args = parse_args()
    import keras

    from synthseg_bids.generator import GeneratorSettings, LabelsToImage
    from synthseg_bids.network.settings import NetworkSettings
    from synthseg_bids.network.unet import build_unet

    backend = keras.backend.backend()
    spec, indices, source = load_indices(args.data)
    settings = GeneratorSettings(output_shape=(args.shape,) * 3)
    layer = LabelsToImage(spec, settings, seed=args.seed)
    seconds_per_pair = timed(generator_fn(layer, indices), args.repeats)

    unet_shape = args.unet_shape or args.shape
    n_labels = len(spec.label_table)
    model = build_unet(NetworkSettings(n_levels=args.levels, base_features=args.features), n_labels, seed=args.seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy")
    rng = np.random.default_rng(args.seed)
    image = rng.random((1, unet_shape, unet_shape, unet_shape, 1), dtype=np.float32)
    target = np.eye(n_labels, dtype=np.float32)[rng.integers(n_labels, size=(1, unet_shape, unet_shape, unet_shape))]
    seconds_per_step = timed(lambda: model.train_on_batch(image, target), args.repeats)

    print(f"backend: {backend}; devices: {_devices()}")
    print(f"label map: {source}")
    print(f"generator: {args.shape}^3 pair (image + {n_labels}-channel one-hot): "
          f"{seconds_per_pair:.3f} s/pair = {1 / seconds_per_pair:.2f} pairs/s")
    print(f"U-Net ({args.levels} levels, {args.features} features, {model.count_params():,} parameters) "
          f"training step at {unet_shape}^3, batch 1: {seconds_per_step:.3f} s")
    if unet_shape == args.shape:
        print(f"pair / step time ratio: {seconds_per_pair / seconds_per_step:.2f}")
    return 0


def _devices() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return ", ".join(str(d) for d in jax.devices())
    import tensorflow as tf

    return ", ".join(d.name for d in tf.config.list_logical_devices()) or "cpu"


if __name__ == "__main__":
    sys.exit(main())
