"""Supervised training (or fine-tuning) of the U-Net on real image / label map pairs.

The same network, losses, schedule, checkpoints and resume logic as synthetic
training (:mod:`synthseg_bids.training.loop`), with batches of random crops of real
images (:class:`~synthseg_bids.training.data.ImageLabelCrops`: left-right flips with
label swap, intensity scaling and gamma).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from keras import ops

from ..core.labels import LabelTable, default_label_table
from ..network.model_file import ModelInfo
from ..network.settings import NetworkSettings
from ..network.unet import build_unet
from .data import ImageLabelCrops, load_training_pairs
from .loop import SegmentationTrainer, file_digests, run_training
from .settings import AugmentationSettings, TrainingSettings

__all__ = ["SupervisedTrainer", "train_supervised"]


class SupervisedTrainer(SegmentationTrainer):
    """``call((image, channels))`` -> ``(output, one-hot target)``."""

    def __init__(self, unet: Any, settings: TrainingSettings, n_labels: int, **kwargs: Any):
        super().__init__(unet, settings, **kwargs)
        self.n_labels = int(n_labels)

    def call(self, inputs: Any, training: bool = False) -> tuple[Any, Any]:
        image, channels = inputs
        target = ops.one_hot(ops.cast(channels, "int32"), self.n_labels, dtype="float32")
        return self.segment(image, training=training), target


def train_supervised(
    images: Sequence[str | os.PathLike],
    label_maps: Sequence[str | os.PathLike],
    model_dir: str | os.PathLike,
    network_settings: NetworkSettings | None = None,
    training_settings: TrainingSettings | None = None,
    augmentation: AugmentationSettings | None = None,
    *,
    label_table: LabelTable | None = None,
    resume: bool = True,
    initial_model: str | os.PathLike | None = None,
) -> Path:
    """Train the U-Net on real (image, label map) pairs; returns ``model_dir/model.npz``.

    Parameters
    ----------
    images, label_maps
        Matching lists of files (same grid per pair, isotropic 1 mm).
    model_dir
        Output folder (checkpoints, log, final model).
    network_settings, training_settings, augmentation
        Defaults: SynthSeg's network and schedule, light augmentation, 160^3 crops.
    label_table
        Output channels (default: the 33 SynthSeg structures).
    resume
        Continue from the newest checkpoint of ``model_dir`` if any.
    initial_model
        Start from this model file's weights (fine-tuning); labels and network must match.
    """
    network_settings = network_settings or NetworkSettings()
    training_settings = training_settings or TrainingSettings()
    augmentation = augmentation or AugmentationSettings()
    table = label_table or default_label_table()
    bad = [s for s in augmentation.crop_shape if s % network_settings.size_multiple]
    if bad:
        raise ValueError(
            f"crop_shape {augmentation.crop_shape} must be multiples of {network_settings.size_multiple} "
            f"(2 ** (n_levels - 1))"
        )
    pairs = load_training_pairs(images, label_maps, table, unknown_labels=augmentation.unknown_labels)
    dataset = ImageLabelCrops(
        pairs,
        table.flip_permutation,
        augmentation,
        training_settings.batch_size,
        training_settings.steps_per_epoch,
        training_settings.seed,
    )
    unet = build_unet(
        network_settings, len(table), seed=training_settings.seed, dtype_policy=training_settings.mixed_precision
    )
    trainer = SupervisedTrainer(unet, training_settings, len(table))
    info = ModelInfo(
        network=network_settings,
        label_table=table,
        training={
            "kind": "supervised",
            "settings": training_settings.to_dict(),
            "augmentation": augmentation.to_dict(),
        },
        provenance={"training_data": file_digests([*images, *label_maps])},
    )
    return run_training(
        trainer,
        unet,
        dataset,
        model_dir=Path(model_dir),
        settings=training_settings,
        info=info,
        resume=resume,
        initial_model=initial_model,
    )
