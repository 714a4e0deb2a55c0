"""``synthseg-bids train``: train the U-Net on synthetic images (SynthSeg), then validate it.

Usage::

    # train (resumes automatically from the newest checkpoint in --out)
    KERAS_BACKEND=jax synthseg-bids train --labels ../shared/data/synthseg/training_label_maps \\
        --out /data/models/synthseg_v1 --settings default_model

    # then score every checkpoint on synthetic images from held-out label maps
    synthseg-bids train --out /data/models/synthseg_v1 --settings default_model \\
        --validate-only --validation-labels /data/held_out_label_maps

``--settings`` is a recipe file (:func:`synthseg_bids.training.recipe.load_recipe`: tables
``[generator]``, ``[network]``, ``[training]``; missing keys take the defaults, unknown keys
are an error) or the name of a recipe shipped with the package (``shipped_model``,
``default_model``: SynthSeg's). Outputs in ``--out``: ``checkpoints/epoch_NNNN.npz``,
``training_log.tsv``, ``model.npz`` (the trained model) and, with validation,
``validation/validation_dice.tsv`` + ``.png``. With ``--install-best`` the checkpoint with
the best validation Dice is copied to ``model_best.npz`` (float16 weights, with its
validation scores in the metadata).

The generation spec (labels, classes, priors) comes from ``--spec-folder``, default the
``labels_classes_priors`` folder next to ``--labels`` when it exists (SynthSeg's files),
otherwise from the labels present in the maps. Exit status: 0 done, 1 bad settings or
inputs (one ``error: ...`` line), 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from .arguments import CommandParser, positive_int

__all__ = ["PROG", "build_parser", "main"]

PROG = "synthseg-bids train"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, help="folder of training label maps")
    parser.add_argument("--out", type=Path, required=True, help="model folder (checkpoints, log, model.npz)")
    parser.add_argument("--settings", help="recipe: a TOML file with [generator], [network], [training] tables, "
                        "or the name of a shipped recipe (shipped_model, default_model)")
    parser.add_argument("--spec-folder", type=Path, help="SynthSeg labels_classes_priors folder")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue from the newest checkpoint in --out (default: yes)")
    parser.add_argument("--initial-model", type=Path, help="start from this model file's weights (fine-tuning)")
    parser.add_argument("--validate-only", action="store_true", help="skip training; validate the checkpoints")
    parser.add_argument("--validation-labels", type=Path, help="held-out label maps: validate on synthetic images")
    parser.add_argument("--validation-images", type=Path, nargs="*", default=[], help="real validation images")
    parser.add_argument("--validation-dseg", type=Path, nargs="*", default=[], help="their label maps (same order)")
    parser.add_argument("--n-validation", type=positive_int, default=10,
                        help="synthetic validation images (default 10)")
    parser.add_argument("--install-best", action="store_true", help="copy the best checkpoint to model_best.npz")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.validate_only and not (args.validation_labels or args.validation_images):
        parser.error("--validate-only needs --validation-labels or --validation-images")
    if not args.validate_only and args.labels is None:
        parser.error("--labels is required to train")
    if len(args.validation_images) != len(args.validation_dseg):
        parser.error("--validation-images and --validation-dseg need the same number of files")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from ..core.io import ImageError
    from ..core.settings import SettingsError, recipe_path
    from ..generator.spec import GenerationSpec, spec_next_to
    from ..network import ModelFileError
    from ..training.recipe import load_recipe

    try:
        generator, network, training = load_recipe(None if args.settings is None else recipe_path(args.settings))
        if args.spec_folder is not None:
            spec = GenerationSpec.from_folder(args.spec_folder)
        else:
            spec = spec_next_to(args.labels) if args.labels is not None else None
        if not args.validate_only:
            from ..training import train_synthetic

            path = train_synthetic(args.labels, args.out, generator, network, training, spec=spec,
                                   resume=args.resume, initial_model=args.initial_model)
            print(f"trained model: {path}")
        if args.validation_labels or args.validation_images:
            _validate(args, generator, spec)
    except (SettingsError, ImageError, ModelFileError, ValueError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    return 0


def _validate(args: argparse.Namespace, generator, spec) -> None:
    """Score the checkpoints; optionally install the best one as model_best.npz."""
    from ..training import make_validation_set, validate_checkpoints
    from ..training.recipe import install_best_checkpoint

    images, labels = list(args.validation_images), list(args.validation_dseg)
    if args.validation_labels:
        pairs = make_validation_set(args.validation_labels, args.out / "validation" / "data", generator,
                                    spec=spec, n_images=args.n_validation)
        images += [p for p, _ in pairs]
        labels += [q for _, q in pairs]
    table = validate_checkpoints(args.out, images, labels)
    best = table.attrs["best_checkpoint"]
    row = table.loc[table["checkpoint"] == best].iloc[0]
    print(f"validation table: {table.attrs['tsv']}\nplot: {table.attrs['png']}\n"
          f"best checkpoint: {best} (epoch {row['epoch']}, mean Dice {row['mean_dice']:.4f})")
    if args.install_best:
        print(f"installed {install_best_checkpoint(table, args.out / 'model_best.npz', len(images))}")
