"""Checkpoint validation: Dice of every saved checkpoint on a validation set.

- :func:`validate_checkpoints` segments each validation image with each checkpoint
  (whole volume, zero-padded to a multiple of ``2 ** (n_levels - 1)``, argmax -> label
  values), scores every structure with :func:`synthseg_bids.core.metrics.dice_scores`,
  writes ``validation_dice.tsv`` (one row per checkpoint: epoch, checkpoint, mean Dice,
  Dice of each structure averaged over the images) and ``validation_dice.png`` (Dice vs
  epoch), and returns the table; the best checkpoint (highest mean Dice) is in
  ``table.attrs["best_checkpoint"]`` and :func:`best_checkpoint`.
- :func:`make_validation_set` writes synthetic (image, label map) pairs generated from
  held-out label maps with a fixed seed, so validation can run without real images.

The mean Dice is over the structures other than background, ignoring structures absent
from both the reference and the prediction of an image (NaN Dice).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.io import atomic_path, save_image, write_table
from ..core.labels import LabelTable
from ..core.metrics import dice_scores
from ..network.model_file import ModelFileError, read_model_file, set_weights_from
from ..network.unet import build_unet
from .checkpoints import list_checkpoints
from .data import TrainingPair, load_training_pairs

__all__ = [
    "PLOT_NAME",
    "TABLE_NAME",
    "best_checkpoint",
    "make_validation_set",
    "predict_label_map",
    "validate_checkpoints",
]

logger = logging.getLogger("synthseg_bids.training")

#: Output names in the validation folder.
TABLE_NAME = "validation_dice.tsv"
PLOT_NAME = "validation_dice.png"


def predict_label_map(model: Any, image: np.ndarray, table: LabelTable, size_multiple: int) -> np.ndarray:
    """Segment a prepared image (X, Y, Z) in [0, 1]: label values (int32) on its grid."""
    from keras import ops

    shape = np.array(image.shape)
    padded_shape = -(-shape // size_multiple) * size_multiple
    padded = np.zeros(padded_shape, np.float32)
    padded[tuple(slice(0, s) for s in shape)] = image
    posteriors = ops.convert_to_numpy(model(padded[None, ..., None], training=False))[0]
    channels = posteriors[tuple(slice(0, s) for s in shape)].argmax(-1)
    return table.values[channels]


def validate_checkpoints(
    model_dir_or_checkpoints: str | os.PathLike | Sequence[str | os.PathLike],
    images: Sequence[str | os.PathLike],
    label_maps: Sequence[str | os.PathLike],
    *,
    out_dir: str | os.PathLike | None = None,
    unknown_labels: str = "background",
) -> pd.DataFrame:
    """Score every checkpoint on (image, label map) pairs; write a TSV and a plot.

    Parameters
    ----------
    model_dir_or_checkpoints
        A training folder (all of ``checkpoints/epoch_NNNN.npz``) or a list of model files.
    images, label_maps
        Validation pairs (same grid per pair, voxels of the model's resolution).
    out_dir
        Where to write ``validation_dice.tsv`` and ``.png`` (default:
        ``<model_dir>/validation``, or the first checkpoint's folder for a list).
    unknown_labels
        Reference label values outside the model's label table: 'background' (default,
        e.g. extra-cerebral generation labels) or 'error'.

    Returns
    -------
    pandas.DataFrame
        Columns ``epoch``, ``checkpoint``, ``mean_dice`` and one per structure name, one
        row per checkpoint by epoch; ``attrs``: ``best_checkpoint``, ``best_epoch``,
        ``tsv``, ``png``.

    Raises
    ------
    ModelFileError
        An unreadable checkpoint (names the file).
    ValueError
        No checkpoints; or checkpoints with different label tables.
    """
    checkpoints = _checkpoints(model_dir_or_checkpoints)
    if out_dir is None:
        source = Path(model_dir_or_checkpoints) if isinstance(model_dir_or_checkpoints, (str, os.PathLike)) else None
        out_dir = source / "validation" if source is not None and source.is_dir() else checkpoints[0][1].parent
    out_dir = Path(out_dir)
    first = read_model_file(checkpoints[0][1]).info
    table = first.label_table
    pairs = load_training_pairs(
        images, label_maps, table, resolution_mm=first.resolution_mm, unknown_labels=unknown_labels
    )
    rows = []
    model, network = None, None
    for epoch, path in checkpoints:
        contents = read_model_file(path)
        info = contents.info
        if info.label_table != table:
            raise ModelFileError(path, "has another label table than the first checkpoint")
        if info.network != network:
            model, network = build_unet(info.network, info.n_labels, seed=0), info.network
        set_weights_from(contents, model)
        scores = np.array([_dice(model, pair, table, info.network.size_multiple) for pair in pairs])
        with warnings.catch_warnings():  # 'Mean of empty slice' for structures absent everywhere
            warnings.simplefilter("ignore", RuntimeWarning)
            per_structure = np.nanmean(scores, axis=0)
            mean = float(np.nanmean(scores[:, 1:]))
        rows.append({"epoch": epoch, "checkpoint": str(path), "mean_dice": mean,
                     **dict(zip(table.names, per_structure))})
        logger.info("validated %s: mean Dice %.4f", path.name, mean)
    frame = pd.DataFrame(rows)
    best = frame.loc[frame["mean_dice"].idxmax()] if frame["mean_dice"].notna().any() else frame.iloc[-1]
    tsv = out_dir / TABLE_NAME
    write_table(tsv, frame, float_format="%.6f")
    png = _plot(frame, out_dir / PLOT_NAME, int(best["epoch"]))
    frame.attrs.update(best_checkpoint=str(best["checkpoint"]), best_epoch=int(best["epoch"]), tsv=str(tsv), png=str(png))
    logger.info("best checkpoint: %s (mean Dice %.4f)", best["checkpoint"], best["mean_dice"])
    return frame


def best_checkpoint(table: pd.DataFrame) -> Path:
    """The checkpoint with the highest mean Dice in a :func:`validate_checkpoints` table."""
    return Path(table.loc[table["mean_dice"].idxmax(), "checkpoint"])


def make_validation_set(
    label_maps: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    generator_settings: Any = None,
    *,
    spec: Any = None,
    n_images: int = 10,
    seed: int = 12345,
) -> list[tuple[Path, Path]]:
    """Write ``n_images`` synthetic (image, label map) pairs from held-out label maps.

    Uses :class:`~synthseg_bids.generator.BrainGenerator` with a fixed ``seed`` (same
    inputs -> same files). Files: ``synth_NNN_image.nii.gz`` / ``synth_NNN_dseg.nii.gz``.

    Returns
    -------
    list of (image path, label map path)
    """
    from ..generator import BrainGenerator, GeneratorSettings

    generator = BrainGenerator(label_maps, generator_settings or GeneratorSettings(), spec=spec, seed=seed)
    out_dir = Path(out_dir)
    pairs = []
    for index in range(int(n_images)):
        image, labels, affine = generator.generate()
        image_path = save_image(image, affine, out_dir / f"synth_{index:03d}_image.nii.gz", dtype=np.float32)
        label_path = save_image(labels, affine, out_dir / f"synth_{index:03d}_dseg.nii.gz", dtype=np.int32)
        pairs.append((image_path, label_path))
    return pairs


def _checkpoints(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[tuple[int, Path]]:
    if isinstance(source, (str, os.PathLike)):
        found = list_checkpoints(source)
        if not found:
            raise ValueError(f"{source}: no checkpoints (checkpoints/epoch_NNNN.npz) to validate")
        return found
    found = []
    for path in source:
        info = read_model_file(path)
        epoch = info.extra.get("checkpoint", {}).get("epoch", info.info.provenance.get("epochs_trained", 0))
        found.append((int(epoch), Path(path)))
    if not found:
        raise ValueError("no checkpoints to validate")
    return sorted(found)


def _dice(model: Any, pair: TrainingPair, table: LabelTable, size_multiple: int) -> np.ndarray:
    prediction = predict_label_map(model, pair.image, table, size_multiple)
    return dice_scores(table.values[pair.channels], prediction, table.values)


def _plot(frame: pd.DataFrame, path: Path, best_epoch: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    structures = [c for c in frame.columns if c not in ("epoch", "checkpoint", "mean_dice")][1:]
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in structures:
        ax.plot(frame["epoch"], frame[name], color="0.75", linewidth=0.7)
    ax.plot(frame["epoch"], frame["mean_dice"], color="C0", linewidth=2, marker="o", label="mean (no background)")
    ax.axvline(best_epoch, color="C3", linestyle="--", label=f"best: epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1)
    ax.set_title("Validation Dice per checkpoint (grey: structures)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
