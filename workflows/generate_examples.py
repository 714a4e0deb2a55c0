"""Recipe: write a few synthetic (image, label map) pairs and a PNG montage to look at.

Usage (from the repository root)::

    python workflows/generate_examples.py --n 3 --seed 0 --out /tmp/synth_examples
    python workflows/generate_examples.py --settings my_generator.toml --out /tmp/synth

Writes ``example_XX_image.nii.gz`` (float32 in [0, 1]), ``example_XX_labels.nii.gz`` (int32
FreeSurfer values) and ``montage.png`` (for every example: axial, coronal and sagittal
slices through the centre, image alone and with the labels overlaid). Files are written
atomically. The label maps default to ``../shared/data/synthseg/training_label_maps``
with the shared generation labels/classes when that folder has them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "synthseg"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_DATA / "training_label_maps", help="folder of label maps")
    parser.add_argument("--n", type=int, default=3, help="number of examples (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--settings", type=Path, default=None, help="GeneratorSettings .toml/.json file")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    return parser.parse_args(argv)


def _slices(volume: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal central slices of a RAS volume, oriented for display."""
    cx, cy, cz = (s // 2 for s in volume.shape)
    return [np.rot90(volume[:, :, cz]), np.rot90(volume[:, cy, :]), np.rot90(volume[cx, :, :])]


def write_montage(pairs: list[tuple[np.ndarray, np.ndarray]], path: Path, label_table) -> Path:
    """PNG grid: one row per example; 3 image views then the same views with labels overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthseg_bids.core.io import atomic_path

    lut = np.zeros((int(label_table.values.max()) + 1, 4))
    for s in label_table:
        lut[s.value, :3] = np.array(s.color) / 255.0
        lut[s.value, 3] = 0.0 if s.value == 0 else 0.45
    fig, axes = plt.subplots(len(pairs), 6, figsize=(15, 2.6 * len(pairs)), squeeze=False)
    for row, (image, labels) in enumerate(pairs):
        for col, (im, lab) in enumerate(zip(_slices(image), _slices(labels))):
            for offset, overlay in ((0, False), (3, True)):
                ax = axes[row, col + offset]
                ax.imshow(im, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                if overlay:
                    ax.imshow(lut[lab], interpolation="nearest")
                ax.set_axis_off()
        axes[row, 0].set_title(f"example {row}", fontsize=8, loc="left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from synthseg_bids.core.io import save_image
    from synthseg_bids.generator import BrainGenerator, GenerationSpec, GeneratorSettings

    settings = GeneratorSettings() if args.settings is None else GeneratorSettings.from_file(args.settings)
    priors_dir = args.labels.parent / "labels_classes_priors"
    spec = GenerationSpec.from_folder(priors_dir) if (priors_dir / "generation_labels.npy").is_file() else None
    generator = BrainGenerator(args.labels, settings, spec=spec, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(args.n):
        image, labels, affine = generator.generate()
        save_image(image, affine, args.out / f"example_{i:02d}_image.nii.gz", dtype=np.float32)
        save_image(labels, affine, args.out / f"example_{i:02d}_labels.nii.gz", dtype=np.int32)
        pairs.append((image, labels))
        print(f"example {i}: image range [{image.min():.3f}, {image.max():.3f}], {np.unique(labels).size} labels")
    montage = write_montage(pairs, args.out / "montage.png", generator.spec.label_table)
    print(f"wrote {args.n} pairs and {montage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
