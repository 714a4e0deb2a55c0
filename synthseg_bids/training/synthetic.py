"""Synthetic training (SynthSeg): label maps -> random images -> U-Net, on the device.

The trainer chains the generator layer
(:class:`~synthseg_bids.generator.LabelsToImage`) and the U-Net in one ``keras.Model``;
its ``call`` returns ``(network output, one-hot target)``, both made inside the
jit-compiled train step, so image synthesis runs on the accelerator and only uint8
label maps cross from the host (:class:`~synthseg_bids.training.data.LabelMapBatches`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..network.model_file import ModelInfo
from ..network.settings import NetworkSettings
from ..network.unet import build_unet
from .data import LabelMapBatches
from .loop import SegmentationTrainer, file_digests, run_training
from .settings import TrainingSettings

__all__ = ["SyntheticTrainer", "batch_norm_images", "generator_metadata", "train_synthetic"]

logger = logging.getLogger("synthseg_bids.training")


class SyntheticTrainer(SegmentationTrainer):
    """``call(indices)`` -> ``(output, target)`` with the image and target synthesised in-graph.

    Parameters
    ----------
    unet
        The network (trained in place).
    generator
        A :class:`~synthseg_bids.generator.LabelsToImage` layer.
    settings
        Training settings (loss choice, warm-up target).
    """

    def __init__(self, unet: Any, generator: Any, settings: TrainingSettings, **kwargs: Any):
        super().__init__(unet, settings, **kwargs)
        self.generator = generator

    def call(self, indices: Any, training: bool = False) -> tuple[Any, Any]:
        image, target = self.generator(indices)
        return self.segment(image, training=training), target


def generator_metadata(settings: Any, spec: Any) -> dict[str, Any]:
    """Generator settings and generation spec as plain JSON data (stored in model files)."""
    data: dict[str, Any] = {
        "settings": settings.to_dict(),
        "generation_labels": spec.generation_labels.tolist(),
        "generation_classes": spec.generation_classes.tolist(),
        "segmentation_labels": spec.segmentation_labels.tolist(),
    }
    for name in ("prior_means", "prior_stds"):
        value = getattr(spec, name)
        data[name] = None if value is None else np.asarray(value).tolist()
    return data


def train_synthetic(
    label_maps: str | os.PathLike | Sequence[str | os.PathLike],
    model_dir: str | os.PathLike,
    generator_settings: Any = None,
    network_settings: NetworkSettings | None = None,
    training_settings: TrainingSettings | None = None,
    *,
    spec: Any = None,
    resume: bool = True,
    initial_model: str | os.PathLike | None = None,
) -> Path:
    """Train the U-Net on images synthesised from label maps (SynthSeg's method).

    Parameters
    ----------
    label_maps
        Folder of training label maps, one file or a list of files (one shape).
    model_dir
        Output folder: ``checkpoints/epoch_NNNN.npz``, ``training_log.tsv``, ``model.npz``.
    generator_settings
        :class:`~synthseg_bids.generator.GeneratorSettings` (default: SynthSeg's, 160^3
        crops; ``output_shape`` must be multiples of ``2 ** (n_levels - 1)``).
    network_settings, training_settings
        Defaults: SynthSeg's network and schedule.
    spec
        :class:`~synthseg_bids.generator.GenerationSpec` (default: from the labels present in
        the maps); its ``label_table`` gives the output channels.
    resume
        Continue from the newest checkpoint in ``model_dir`` (epoch count, weights,
        optimizer and random state).
    initial_model
        Start from this model file's weights (fine-tuning / continuing the shipped model)
        when not resuming; its labels and network must match.

    Returns
    -------
    pathlib.Path
        ``model_dir/model.npz``.

    Raises
    ------
    ImageError
        A label map is unreadable or has labels outside ``spec`` (names the file).
    ModelFileError
        An unreadable checkpoint or initial model, or one for other labels or another
        network (names the file).
    """
    from ..generator import GenerationSpec, GeneratorSettings, LabelsToImage, load_training_maps

    generator_settings = generator_settings or GeneratorSettings()
    network_settings = network_settings or NetworkSettings()
    training_settings = training_settings or TrainingSettings()
    multiple = network_settings.size_multiple
    if any(int(s) % multiple for s in generator_settings.output_shape):
        raise ValueError(
            f"generator output_shape {tuple(generator_settings.output_shape)} must be multiples of {multiple} "
            f"(2 ** (n_levels - 1) with n_levels={network_settings.n_levels})"
        )
    spec = GenerationSpec.from_label_maps(label_maps) if spec is None else spec
    maps = load_training_maps(label_maps, spec)
    voxel = maps.voxel_size
    if np.ptp(voxel) > 1e-3 * voxel.max():
        logger.warning("training label maps have anisotropic voxels %s mm", np.round(voxel, 3).tolist())
    generator = LabelsToImage(spec, generator_settings, seed=training_settings.seed, voxel_size=voxel)
    spec = generator.spec
    table = spec.label_table
    unet = build_unet(
        network_settings, len(table), seed=training_settings.seed, dtype_policy=training_settings.mixed_precision
    )
    trainer = SyntheticTrainer(unet, generator, training_settings)
    dataset = LabelMapBatches(
        maps.indices, training_settings.batch_size, training_settings.steps_per_epoch, training_settings.seed
    )
    info = ModelInfo(
        network=network_settings,
        label_table=table,
        resolution_mm=float(np.mean(voxel)),
        generator=generator_metadata(generator_settings, spec),
        training={"kind": "synthetic", "settings": training_settings.to_dict()},
        provenance={"training_data": file_digests(maps.paths)},
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
        batch_norm_images=lambda: batch_norm_images(maps.indices, spec, generator_settings, training_settings, voxel),
    )


#: Tag of the random stream of the batch-normalisation images (apart from training's).
_BATCH_NORM_STREAM = 0x424E


def batch_norm_images(
    indices: np.ndarray, spec: Any, generator_settings: Any, settings: TrainingSettings, voxel_size: Any
) -> Iterator[Any]:
    """``settings.batch_norm_images`` synthetic images of ``settings.batch_norm_shape``.

    They come from the training label maps through the training generator, with its
    settings but that shape, from a random stream of their own, seeded by
    ``(settings.seed, 0x424E)``: the label maps are chosen and the images drawn
    independently of the training batches.

    Parameters
    ----------
    indices
        Training label maps as generation indices (N, X, Y, Z).
    spec, generator_settings
        The training generator's spec and settings.
    settings
        Training settings (count, shape, seed, batch size).
    voxel_size
        The label maps' voxel size in mm.

    Yields
    ------
    tensor
        Generator images (``batch_size``, X, Y, Z, 1).
    """
    from ..generator import LabelsToImage

    shape = settings.batch_norm_shape or generator_settings.output_shape
    stream = np.random.SeedSequence([settings.seed, _BATCH_NORM_STREAM])
    generator = LabelsToImage(
        spec, generator_settings.replace(output_shape=tuple(shape)), seed=int(stream.generate_state(1)[0] >> 1),
        voxel_size=voxel_size,
    )
    rng = np.random.default_rng(stream)
    for _ in range(settings.batch_norm_images):
        image, _target = generator(indices[rng.integers(0, len(indices), size=settings.batch_size)])
        yield image
