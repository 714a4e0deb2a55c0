"""Synthetic data generation, training and checkpoint validation (thin wrappers).

- :class:`GenerateImages` -> :class:`synthseg_bids.generator.BrainGenerator`
- :class:`TrainModel` -> :func:`synthseg_bids.training.train_synthetic`
- :class:`ValidateCheckpoints` -> :func:`synthseg_bids.training.validate_checkpoints`

Keras/TensorFlow are imported only when a node runs.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..core.io import save_image, write_table

__all__ = ["GenerateImages", "TrainModel", "ValidateCheckpoints"]


class _GenerateImagesInputSpec(BaseInterfaceInputSpec):
    label_maps = InputMultiObject(File(exists=True), mandatory=True, desc="training label maps (one shape)")
    n_images = traits.Int(1, usedefault=True, desc="number of synthetic examples to write")
    seed = traits.Int(0, usedefault=True, desc="random seed (equal seeds give equal examples)")
    settings = traits.Dict(traits.Str, traits.Any, desc="GeneratorSettings fields (default: SynthSeg's)")


class _GenerateImagesOutputSpec(TraitedSpec):
    out_images = OutputMultiObject(File(exists=True), desc="synthetic images (NIfTI)")
    out_labels = OutputMultiObject(File(exists=True), desc="their label maps (FreeSurfer values)")


class GenerateImages(SimpleInterface):
    """Write synthetic (image, label map) pairs generated from training label maps."""

    input_spec = _GenerateImagesInputSpec
    output_spec = _GenerateImagesOutputSpec

    def _run_interface(self, runtime):
        from ..generator import BrainGenerator, GeneratorSettings

        settings = GeneratorSettings.from_dict(dict(self.inputs.settings)) if isdefined(
            self.inputs.settings) else GeneratorSettings()
        generator = BrainGenerator(list(self.inputs.label_maps), settings, seed=self.inputs.seed)
        images, labels = [], []
        for index in range(self.inputs.n_images):
            image, label, affine = generator.generate()
            images.append(str(save_image(image, affine, Path(runtime.cwd) / f"image_{index:04d}.nii.gz")))
            labels.append(str(save_image(label, affine, Path(runtime.cwd) / f"labels_{index:04d}.nii.gz",
                                         dtype="int32")))
        self._results["out_images"] = images
        self._results["out_labels"] = labels
        return runtime


class _TrainModelInputSpec(BaseInterfaceInputSpec):
    label_maps = InputMultiObject(File(exists=True), mandatory=True, desc="training label maps (one shape)")
    model_dir = Directory(desc="output folder (checkpoints, log, model.npz); default: the node's folder")
    generator_settings = traits.Dict(traits.Str, traits.Any, desc="GeneratorSettings fields")
    network_settings = traits.Dict(traits.Str, traits.Any, desc="NetworkSettings fields")
    training_settings = traits.Dict(traits.Str, traits.Any, desc="TrainingSettings fields")
    initial_model = File(exists=True, desc="start from this model's weights (fine-tuning)")
    resume = traits.Bool(True, usedefault=True, desc="continue from the newest checkpoint in model_dir")


class _TrainModelOutputSpec(TraitedSpec):
    out_model = File(exists=True, desc="the trained model file (model.npz)")
    model_dir = Directory(exists=True, desc="folder with checkpoints/ and the training log")


class TrainModel(SimpleInterface):
    """Train the U-Net on synthetic images (SynthSeg's method)."""

    input_spec = _TrainModelInputSpec
    output_spec = _TrainModelOutputSpec

    def _run_interface(self, runtime):
        from ..generator import GeneratorSettings
        from ..network import NetworkSettings
        from ..training import TrainingSettings, train_synthetic

        def settings(cls, value):
            return cls.from_dict(dict(value)) if isdefined(value) else None

        model_dir = Path(self.inputs.model_dir) if isdefined(self.inputs.model_dir) else Path(runtime.cwd) / "model"
        out = train_synthetic(
            list(self.inputs.label_maps),
            model_dir,
            settings(GeneratorSettings, self.inputs.generator_settings),
            settings(NetworkSettings, self.inputs.network_settings),
            settings(TrainingSettings, self.inputs.training_settings),
            resume=self.inputs.resume,
            initial_model=self.inputs.initial_model if isdefined(self.inputs.initial_model) else None,
        )
        self._results["out_model"] = str(out)
        self._results["model_dir"] = str(model_dir)
        return runtime


class _ValidateCheckpointsInputSpec(BaseInterfaceInputSpec):
    model_dir = Directory(exists=True, mandatory=True, desc="training folder (with checkpoints/)")
    images = InputMultiObject(File(exists=True), mandatory=True, desc="validation images")
    labels = InputMultiObject(File(exists=True), mandatory=True, desc="their reference label maps")


class _ValidateCheckpointsOutputSpec(TraitedSpec):
    out_table = File(exists=True, desc="TSV: one row per checkpoint, mean and per-structure Dice")
    best_checkpoint = File(desc="checkpoint with the best mean Dice")


class ValidateCheckpoints(SimpleInterface):
    """Score every checkpoint of a training run on a validation set (Dice per structure)."""

    input_spec = _ValidateCheckpointsInputSpec
    output_spec = _ValidateCheckpointsOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from ..training import validate_checkpoints

        table = validate_checkpoints(self.inputs.model_dir, list(self.inputs.images), list(self.inputs.labels),
                                     out_dir=runtime.cwd)
        table = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
        out = write_table(Path(runtime.cwd) / "validation.tsv", table, float_format="%.6g")
        self._results["out_table"] = str(out)
        score = next((c for c in ("mean_dice", "dice_mean", "dice") if c in table.columns), None)
        path = next((c for c in ("checkpoint", "path") if c in table.columns), None)
        if table.attrs.get("best_checkpoint"):
            self._results["best_checkpoint"] = str(table.attrs["best_checkpoint"])
        elif score and path and len(table):
            self._results["best_checkpoint"] = str(table.loc[table[score].idxmax(), path])
        return runtime
