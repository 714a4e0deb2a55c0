"""Recipe: train the segmentation U-Net on synthetic images (SynthSeg), then validate it.

Usage (from the repository root)::

    # train (resumes automatically from the newest checkpoint in --out)
    KERAS_BACKEND=jax python workflows/train_model.py \\
        --labels ../shared/data/synthseg/training_label_maps --out /data/models/synthseg_v1 \\
        --settings workflows/settings/default_model.toml

    # then score every checkpoint on synthetic images from held-out label maps
    python workflows/train_model.py --out /data/models/synthseg_v1 --settings workflows/settings/default_model.toml \\
        --validate-only --validation-labels /data/held_out_label_maps

One TOML file holds three tables: ``[generator]`` (GeneratorSettings), ``[network]``
(NetworkSettings) and ``[training]`` (TrainingSettings); missing keys take the defaults,
unknown keys are an error. Outputs in ``--out``: ``checkpoints/epoch_NNNN.npz``,
``training_log.tsv``, ``model.npz`` (the trained model) and, with validation,
``validation/validation_dice.tsv`` + ``.png``. With ``--install-best`` the checkpoint with
the best validation Dice is copied to ``model_best.npz`` (float16 weights, with its
validation scores in the metadata).

The generation spec (labels, classes, priors) comes from ``--spec-folder``, default the
``labels_classes_priors`` folder next to ``--labels`` when it exists (SynthSeg's files),
otherwise from the labels present in the maps.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, help="folder of training label maps")
    parser.add_argument("--out", type=Path, required=True, help="model folder (checkpoints, log, model.npz)")
    parser.add_argument("--settings", type=Path, help="TOML with [generator], [network], [training] tables")
    parser.add_argument("--spec-folder", type=Path, help="SynthSeg labels_classes_priors folder")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue from the newest checkpoint in --out (default: yes)")
    parser.add_argument("--initial-model", type=Path, help="start from this model file's weights (fine-tuning)")
    parser.add_argument("--validate-only", action="store_true", help="skip training; validate the checkpoints")
    parser.add_argument("--validation-labels", type=Path, help="held-out label maps: validate on synthetic images")
    parser.add_argument("--validation-images", type=Path, nargs="*", default=[], help="real validation images")
    parser.add_argument("--validation-dseg", type=Path, nargs="*", default=[], help="their label maps (same order)")
    parser.add_argument("--n-validation", type=int, default=10, help="synthetic validation images (default 10)")
    parser.add_argument("--install-best", action="store_true", help="copy the best checkpoint to model_best.npz")
    return parser.parse_args(argv)


def load_settings(path: Path | None):
    """(GeneratorSettings, NetworkSettings, TrainingSettings) from one TOML file."""
    from synthseg_bids.core.settings import SettingsError
    from synthseg_bids.generator import GeneratorSettings
    from synthseg_bids.network import NetworkSettings
    from synthseg_bids.training import TrainingSettings

    tables = {}
    if path is not None:
        try:
            tables = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise SettingsError(f"{path}: cannot read settings ({err})") from None
        unknown = sorted(set(tables) - {"generator", "network", "training"})
        if unknown:
            raise SettingsError(f"{path}: unknown table(s) {', '.join(unknown)}; use [generator], [network], [training]")
    try:
        return (
            GeneratorSettings.from_dict(tables.get("generator", {})),
            NetworkSettings.from_dict(tables.get("network", {})),
            TrainingSettings.from_dict(tables.get("training", {})),
        )
    except SettingsError as err:
        raise SettingsError(f"{path}: {err}") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from synthseg_bids.core.io import ImageError
    from synthseg_bids.core.settings import SettingsError
    from synthseg_bids.generator import GenerationSpec
    from synthseg_bids.network import ModelFileError

    try:
        if args.validate_only and not (args.validation_labels or args.validation_images):
            raise ValueError("--validate-only needs --validation-labels or --validation-images")
        generator, network, training = load_settings(args.settings)
        spec_folder = args.spec_folder
        if spec_folder is None and args.labels is not None:
            default = args.labels.parent / "labels_classes_priors"
            spec_folder = default if (default / "generation_labels.npy").is_file() else None
        spec = GenerationSpec.from_folder(spec_folder) if spec_folder is not None else None
        if not args.validate_only:
            if args.labels is None:
                raise SystemExit("--labels is required to train")
            from synthseg_bids.training import train_synthetic

            path = train_synthetic(args.labels, args.out, generator, network, training, spec=spec,
                                   resume=args.resume, initial_model=args.initial_model)
            print(f"trained model: {path}")
        if args.validation_labels or args.validation_images:
            validate(args, generator, spec)
    except (SettingsError, ImageError, ModelFileError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def validate(args: argparse.Namespace, generator, spec) -> None:
    """Score the checkpoints; optionally install the best one as model_best.npz."""
    from synthseg_bids.network import load_model, save_model
    from synthseg_bids.training import make_validation_set, validate_checkpoints

    images, labels = list(args.validation_images), list(args.validation_dseg)
    if len(images) != len(labels):
        raise ValueError("--validation-images and --validation-dseg need the same number of files")
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
        model, info = load_model(best)
        scores = {k: (None if v != v else float(v)) for k, v in row.drop(["epoch", "checkpoint"]).items()}
        info = info.replace(validation={"epoch": int(row["epoch"]), "n_images": len(images), "dice": scores})
        path = save_model(args.out / "model_best.npz", model, info, weights_dtype="float16")
        print(f"installed {path}")


if __name__ == "__main__":
    sys.exit(main())
