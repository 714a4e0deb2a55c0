"""Benchmark of synthetic training: steps per second and the share of image generation.

For each configuration (U-Net features/levels, crop shape) it builds the synthetic
trainer (generator layer + U-Net in one jit-compiled Keras step, as
:func:`synthseg_bids.training.train_synthetic`) and times, after one compiling call:

- ``full step``: one ``train_on_batch`` (generation + forward + backward + Adam update);
- ``generator``: the generator alone, jit-compiled (its outputs reduced to a scalar on the
  device, so no large transfer to the host is timed);
- ``gen share``: generator / full step.

A step slower than 60 s is measured once. The label maps are the shared SynthSeg maps
when ``--labels`` (default ``../shared/data/synthseg/training_label_maps``) exists, else a
synthetic ellipsoid head (:func:`toy_head`) 32 voxels larger than the crop.

Usage::

    python benchmarks/bench_training.py                       # CPU, both default configurations
    python benchmarks/bench_training.py --features 24 --levels 5 --shape 160 --steps 5
    KERAS_BACKEND=jax python benchmarks/bench_training.py --steps 20 --mixed-precision mixed_bfloat16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthseg" / "training_label_maps"
#: (features, levels, crop) measured when no --features/--levels/--shape is given.
DEFAULT_CONFIGS = [(24, 5, 160), (16, 4, 96)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (default 3)")
    parser.add_argument("--shape", type=int, help="cubic crop size (default: 160 and 96)")
    parser.add_argument("--features", type=int, help="U-Net base features (default: 24 and 16)")
    parser.add_argument("--levels", type=int, help="U-Net levels (default: 5 and 4)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--mixed-precision", default="float32", help="float32 | mixed_bfloat16 | mixed_float16")
    parser.add_argument("--jit", default="auto", help="jit_compile: auto | on | off")
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS, help="folder of training label maps")
    return parser.parse_args(argv)


def configurations(args: argparse.Namespace) -> list[tuple[int, int, int]]:
    if args.shape is None and args.features is None and args.levels is None:
        return DEFAULT_CONFIGS
    return [(args.features or 24, args.levels or 5, args.shape or 160)]


def label_maps(args: argparse.Namespace, shape: int):
    """(TrainingMaps, GenerationSpec): the shared maps, or a toy head."""
    from synthseg_bids.generator import GenerationSpec, load_training_maps

    if args.labels.is_dir():
        priors = args.labels.parent / "labels_classes_priors"
        spec = GenerationSpec.from_folder(priors) if (priors / "generation_labels.npy").is_file() else None
        spec = spec or GenerationSpec.from_label_maps(args.labels)
        files = sorted(p for p in args.labels.iterdir() if p.name.endswith((".nii.gz", ".nii", ".mgz")))[:2]
        return load_training_maps(files, spec), spec, f"{len(files)} maps from {args.labels.name}"
    import tempfile

    from synthseg_bids.core.io import save_image

    size = shape + 32
    folder = Path(tempfile.mkdtemp())
    path = save_image(toy_head(size), np.eye(4), folder / "toy.nii.gz")
    spec = GenerationSpec.from_label_maps([path])
    return load_training_maps([path], spec), spec, f"toy head {size}^3"


def toy_head(size: int) -> np.ndarray:
    """Nested ellipsoids with FreeSurfer labels: scalp, CSF, left/right cortex and white matter."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij"))
    radius = np.sqrt(((grid / np.array([0.8, 1.0, 0.9])[:, None, None, None]) ** 2).sum(0))
    left = grid[0] < 0
    labels = np.zeros((size,) * 3, np.int32)
    for limit, (lv, rv) in [(0.95, (258, 258)), (0.85, (24, 24)), (0.78, (3, 42)), (0.62, (2, 41)), (0.2, (4, 43))]:
        labels[(radius < limit) & left] = lv
        labels[(radius < limit) & ~left] = rv
    return labels


def timed(function, steps: int) -> tuple[float, float, int]:
    """(first call seconds, mean seconds of the next calls, calls timed)."""
    start = time.perf_counter()
    function()
    first = time.perf_counter() - start
    if first > 60:  # one more step only
        steps = 1
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return first, float(np.mean(times)), steps


def bench(features: int, levels: int, shape: int, args: argparse.Namespace) -> dict:
    import keras
    from keras import ops

    from synthseg_bids.generator import GeneratorSettings, LabelsToImage
    from synthseg_bids.network import NetworkSettings, build_unet, count_parameters
    from synthseg_bids.training import TrainingSettings
    from synthseg_bids.training.loop import make_optimizer
    from synthseg_bids.training.synthetic import SyntheticTrainer

    maps, spec, source = label_maps(args, shape)
    settings = TrainingSettings(steps_per_epoch=1, jit_compile=args.jit, mixed_precision=args.mixed_precision)
    generator = LabelsToImage(spec, GeneratorSettings(output_shape=(shape,) * 3), seed=0, voxel_size=maps.voxel_size)
    unet = build_unet(NetworkSettings(n_levels=levels, base_features=features), len(generator.spec.label_table),
                      seed=0, dtype_policy=args.mixed_precision)
    trainer = SyntheticTrainer(unet, generator, settings)
    trainer.compile(optimizer=make_optimizer(settings), jit_compile=settings.keras_jit_compile)
    rng = np.random.default_rng(0)

    def batch() -> np.ndarray:
        return maps.indices[rng.integers(len(maps.indices), size=args.batch)]

    def step() -> None:
        trainer.train_on_batch(batch())

    class Reduce(keras.layers.Layer):
        def call(self, image, target):
            return ops.reshape(ops.mean(image) + ops.mean(target), (1, 1))

    inputs = keras.Input(maps.indices.shape[1:], batch_size=args.batch, dtype="uint8")
    image, target = generator(inputs)
    generate_only = keras.Model(inputs, Reduce()(image, target))
    generate_only.compile(jit_compile=settings.keras_jit_compile)

    def generate() -> None:
        generate_only.predict_on_batch(batch())

    compile_full, full, n_full = timed(step, args.steps)
    compile_gen, gen, n_gen = timed(generate, args.steps)
    return {
        "config": f"{features}f x {levels}L",
        "crop": f"{shape}^3",
        "params (M)": count_parameters(unet) / 1e6,
        "first step (s)": compile_full,
        "step (s)": full,
        "steps/s": 1.0 / full,
        "generator (s)": gen,
        "gen share": gen / full,
        "timed": f"{n_full}/{n_gen}",
        "source": source,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import keras

    rows = [bench(f, lv, s, args) for f, lv, s in configurations(args)]
    try:
        devices = ", ".join(str(d) for d in keras.distribution.list_devices())
    except (RuntimeError, ValueError, NotImplementedError):
        devices = "?"
    print(f"\nbackend {keras.backend.backend()} ({devices}), batch {args.batch}, policy {args.mixed_precision}, "
          f"jit {args.jit}")
    header = list(rows[0])
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
