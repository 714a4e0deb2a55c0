"""``synthseg-bids generate``: write synthetic (image, label map) pairs and a PNG montage to look at.

Usage::

    synthseg-bids generate --n 3 --seed 0 --out /tmp/synth_examples
    synthseg-bids generate --settings my_generator.toml --out /tmp/synth

Writes ``example_XX_image.nii.gz`` (float32 in [0, 1]), ``example_XX_labels.nii.gz`` (int32
FreeSurfer values) and ``montage.png`` (for every example: axial, coronal and sagittal
slices through the centre, image alone and with the labels overlaid), all atomically. The
label maps default to ``../shared/data/synthseg/training_label_maps`` (relative to the
current folder: the repository root), with SynthSeg's generation labels/classes when the
``labels_classes_priors`` folder next to them has them. Exit status: 0 done, 1 bad
settings or label maps (one ``error: ...`` line), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .arguments import CommandParser, positive_int

__all__ = ["DEFAULT_LABELS", "PROG", "build_parser", "main", "write_montage"]

PROG = "synthseg-bids generate"
#: The shared SynthSeg label maps, seen from the repository root.
DEFAULT_LABELS = Path("..") / "shared" / "data" / "synthseg" / "training_label_maps"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS,
                        help=f"folder of label maps (default {DEFAULT_LABELS})")
    parser.add_argument("--n", type=positive_int, default=3, help="number of examples (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--settings", type=Path, default=None, help="GeneratorSettings .toml/.json file")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    return parser


def _slices(volume):
    """Axial, coronal and sagittal central slices of a RAS volume, oriented for display."""
    import numpy as np

    cx, cy, cz = (s // 2 for s in volume.shape)
    return [np.rot90(volume[:, :, cz]), np.rot90(volume[:, cy, :]), np.rot90(volume[cx, :, :])]


def write_montage(pairs, path: Path, label_table) -> Path:
    """PNG grid: one row per (image, labels) pair; 3 image views then the same views with labels overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.io import atomic_path

    lut = label_table.colour_lut(alpha=0.45)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    import numpy as np

    from ..core.io import ImageError, save_image
    from ..core.settings import SettingsError
    from ..generator import BrainGenerator, GeneratorSettings
    from ..generator.spec import spec_next_to

    try:
        settings = GeneratorSettings() if args.settings is None else GeneratorSettings.from_file(args.settings)
        generator = BrainGenerator(args.labels, settings, spec=spec_next_to(args.labels), seed=args.seed)
    except (SettingsError, ImageError, ValueError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
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
