"""The training loop shared by synthetic and supervised training.

- :class:`SegmentationTrainer`: a ``keras.Model`` around the U-Net whose ``call`` returns
  ``(output, target)`` (subclasses decide where the target comes from: the generator
  inside the graph, or the data) and whose ``compute_loss`` applies the loss of the
  current phase ('wl2' warm-up on logits, then the main loss on posteriors). It runs
  with ``fit`` on every Keras backend, jit-compiled.
- :func:`run_training`: phases, resume from a checkpoint (weights, optimizer, random
  state, epoch counter), per-epoch checkpoints, log lines and a TSV log, final model.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import keras
from keras import ops

from ..core.io import file_sha256
from ..core.progress import Progress
from ..core.settings import SettingsError
from ..network.model_file import ModelFileError, ModelInfo, read_model_file, save_model, set_weights_from
from ..network.unet import logits_model
from .checkpoints import Checkpoint, TrainingState, checkpoint_path, list_checkpoints, save_checkpoint
from .losses import make_loss, weighted_l2_loss
from .settings import TrainingSettings

__all__ = [
    "FINAL_MODEL_NAME",
    "LOG_NAME",
    "CheckpointSaver",
    "EpochLogger",
    "SegmentationTrainer",
    "describe_environment",
    "file_digests",
    "make_optimizer",
    "run_training",
]

logger = logging.getLogger("synthseg_bids.training")

#: File name of the trained model in the model folder.
FINAL_MODEL_NAME = "model.npz"
#: Per-epoch log (TSV) in the model folder.
LOG_NAME = "training_log.tsv"


class SegmentationTrainer(keras.Model):
    """Trains a U-Net; ``call(x)`` returns ``(output, target)``.

    ``output`` is the logits in the 'wl2' phase and the float32 softmax posteriors in
    the 'main' phase. Subclasses implement :meth:`call`. Change :attr:`phase` only
    together with a new ``compile`` (the compiled step depends on it).

    Parameters
    ----------
    unet
        A model from :func:`~synthseg_bids.network.build_unet` (trained in place).
    settings
        Loss choice and warm-up target.
    """

    def __init__(self, unet: keras.Model, settings: TrainingSettings, **kwargs: Any):
        super().__init__(**kwargs)
        self.logits_net = logits_model(unet)
        self.phase = "main"
        self._wl2_target = float(settings.wl2_target)
        self._main_loss = make_loss(settings.loss, settings.class_weights)

    def segment(self, image: Any, training: bool = False) -> Any:
        """Network output of the current phase for ``image`` (B, X, Y, Z, 1)."""
        logits = self.logits_net(image, training=training)
        if self.phase == "wl2":
            return logits
        return ops.softmax(ops.cast(logits, "float32"), axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):  # noqa: D102
        output, target = y_pred
        if self.phase == "wl2":
            per_sample = weighted_l2_loss(target, output, self._wl2_target)
        else:
            per_sample = self._main_loss(target, output)
        return ops.mean(per_sample)

    def state_variables(self, unet: keras.Model) -> list[Any]:
        """Variables that are neither U-Net weights nor optimizer/metric state (RNG states)."""
        weights = {id(v) for v in unet.weights}
        return [v for v in self.variables if id(v) not in weights]


def make_optimizer(settings: TrainingSettings) -> keras.optimizers.Optimizer:
    """Adam with the settings' learning rate (inverse-time decay per epoch if set)."""
    rate: Any = settings.learning_rate
    if settings.lr_decay > 0:
        rate = keras.optimizers.schedules.InverseTimeDecay(
            settings.learning_rate, decay_steps=settings.steps_per_epoch, decay_rate=settings.lr_decay
        )
    optimizer = keras.optimizers.Adam(learning_rate=rate)
    if settings.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class EpochLogger(keras.callbacks.Callback):
    """Logs one line per epoch (loss, steps/s, ETA) and appends it to a TSV file."""

    def __init__(self, log_path: Path, settings: TrainingSettings, phase: str):
        super().__init__()
        self.log_path = Path(log_path)
        self.settings = settings
        self.phase = phase
        self._start = time.perf_counter()
        self._progress: Progress | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._progress is None:  # the first epoch of this run (later ones when resuming)
            self._progress = Progress(total=self.settings.epochs - epoch)
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._start
        loss = float((logs or {}).get("loss", float("nan")))
        rate = self.settings.steps_per_epoch / seconds if seconds > 0 else float("inf")
        logger.info(
            "epoch %d/%d [%s] loss %.5f  %.2f steps/s  %s",
            epoch + 1, self.settings.epochs, self.phase, loss, rate, self._progress.advance(seconds),
        )
        new = not self.log_path.exists()
        with open(self.log_path, "a") as stream:
            if new:
                stream.write("epoch\tphase\tloss\tseconds\tsteps_per_s\tfinished\n")
            stamp = datetime.datetime.now().isoformat(timespec="seconds")
            stream.write(f"{epoch + 1}\t{self.phase}\t{loss:.6g}\t{seconds:.2f}\t{rate:.4g}\t{stamp}\n")


class CheckpointSaver(keras.callbacks.Callback):
    """Saves a checkpoint after every ``checkpoint_every`` epochs and after the last."""

    def __init__(
        self,
        model_dir: Path,
        unet: keras.Model,
        info: ModelInfo,
        settings: TrainingSettings,
        phase: str,
        state_variables: Sequence[Any],
    ):
        super().__init__()
        self.model_dir = Path(model_dir)
        self.unet = unet
        self.info = info
        self.settings = settings
        self.phase = phase
        self.state_variables = list(state_variables)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        done = epoch + 1
        if done % self.settings.checkpoint_every and done != self.settings.epochs:
            return
        state = TrainingState(
            epoch=done, phase=self.phase, global_step=done * self.settings.steps_per_epoch, seed=self.settings.seed
        )
        info = _with_progress(self.info, done, self.settings)
        path = save_checkpoint(
            checkpoint_path(self.model_dir, done), self.unet, info, state, self.model.optimizer, self.state_variables
        )
        logger.info("saved %s", path)
        if self.settings.keep_checkpoints:
            for _, old in list_checkpoints(self.model_dir)[: -self.settings.keep_checkpoints]:
                old.unlink()


class _RestoreOptimizer(keras.callbacks.Callback):
    """Assigns a checkpoint's optimizer variables once ``fit`` has built the optimizer."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        self.checkpoint = checkpoint

    def on_train_begin(self, logs: dict | None = None) -> None:
        optimizer = self.model.optimizer
        if not optimizer.built:  # TensorFlow builds it lazily at the first step
            optimizer.build(self.model.trainable_variables)
        self.checkpoint.restore_optimizer(optimizer)


class _SetDatasetEpoch(keras.callbacks.Callback):
    """Tells the dataset which epoch starts (its samples are a function of the epoch)."""

    def __init__(self, dataset: Any):
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.dataset.epoch = epoch


def run_training(
    trainer: SegmentationTrainer,
    unet: keras.Model,
    dataset: Any,
    *,
    model_dir: Path,
    settings: TrainingSettings,
    info: ModelInfo,
    resume: bool,
    initial_model: str | os.PathLike | None,
    batch_norm_images: Callable[[], Iterable[Any]] | None = None,
) -> Path:
    """Train ``unet`` through ``trainer`` on ``dataset`` and write ``model_dir/model.npz``.

    Parameters
    ----------
    trainer, unet
        The trainer wrapping ``unet`` (built with the settings' seed and policy).
    dataset
        A ``keras.utils.PyDataset`` of ``settings.steps_per_epoch`` batches with an
        ``epoch`` attribute (set here at the start of every epoch).
    model_dir
        Output folder: ``checkpoints/``, ``training_log.tsv``, ``model.npz``.
    settings
        Schedule.
    info
        Metadata of the model being trained (network, labels, generator/training
        settings, provenance); progress fields are added at each save.
    resume
        Continue from the newest checkpoint in ``model_dir`` if there is one.
    initial_model
        Model file whose weights start the training (fine-tuning); ignored when
        resuming from a checkpoint. Its label table and network must match ``info``.
    batch_norm_images
        With ``settings.batch_norm_images``: returns the network inputs from which the
        batch-normalisation statistics are recomputed after the last epoch
        (:func:`~synthseg_bids.training.batch_norm.recalibrate_batch_norm`).

    Returns
    -------
    pathlib.Path
        The final model file.
    """
    if settings.batch_norm_images and batch_norm_images is None:
        raise SettingsError("batch_norm_images is set, but this kind of training has no images to recompute "
                            "batch-normalisation statistics with (synthetic training only)")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = _resume_point(model_dir, info, settings) if resume else None
    start = 0
    if checkpoint is not None:
        checkpoint.restore_weights(unet)
        checkpoint.restore_state(trainer.state_variables(unet))
        start = checkpoint.state.epoch
        sessions = list(checkpoint.info.provenance.get("sessions", []))
        if "initial_model" in checkpoint.info.provenance:  # a fine-tuning run keeps its starting point
            info = info.replace(provenance={**info.provenance,
                                            "initial_model": checkpoint.info.provenance["initial_model"]})
        logger.info("resuming from %s (epoch %d)", checkpoint.path, start)
    else:
        if list_checkpoints(model_dir):
            logger.warning("%s holds checkpoints; starting afresh (resume is off) and overwriting them", model_dir)
        sessions = []
        if initial_model is not None:
            info = _start_from(unet, initial_model, info)
    sessions.append({**describe_environment(), "first_epoch": start + 1})
    info = info.replace(provenance={**info.provenance, "sessions": sessions})

    state_variables = trainer.state_variables(unet)
    for phase, first, last in (("wl2", 0, settings.wl2_epochs), ("main", settings.wl2_epochs, settings.epochs)):
        if start >= last:
            continue
        trainer.phase = phase
        trainer.compile(optimizer=make_optimizer(settings), jit_compile=settings.keras_jit_compile)
        callbacks: list[keras.callbacks.Callback] = [_SetDatasetEpoch(dataset)]
        if checkpoint is not None and checkpoint.state.phase == phase and checkpoint.state.epoch > first:
            callbacks.append(_RestoreOptimizer(checkpoint))
        callbacks += [
            EpochLogger(model_dir / LOG_NAME, settings, phase),
            CheckpointSaver(model_dir, unet, info, settings, phase, state_variables),
        ]
        trainer.fit(
            dataset, epochs=last, initial_epoch=max(first, start), callbacks=callbacks, shuffle=False, verbose=0
        )
        start = last
    if settings.average_last > 1:
        info = _averaged(unet, model_dir, info, settings)
    if batch_norm_images is not None and settings.batch_norm_images:
        info = _recalibrated(unet, batch_norm_images, info, settings)
    final = _with_progress(info, settings.epochs, settings)
    path = save_model(model_dir / FINAL_MODEL_NAME, unet, final, weights_dtype=settings.save_dtype)
    logger.info("wrote %s", path)
    return path


def _averaged(unet: keras.Model, model_dir: Path, info: ModelInfo, settings: TrainingSettings) -> ModelInfo:
    """Set the weights to their mean over the last ``settings.average_last`` epochs' checkpoints."""
    from .averaging import average_weights

    epochs = list(range(settings.epochs - settings.average_last + 1, settings.epochs + 1))
    paths = [checkpoint_path(model_dir, epoch) for epoch in epochs]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise SettingsError(f"{paths[0].parent}: average_last = {settings.average_last} needs the "
                            f"checkpoints of epochs {epochs[0]}-{epochs[-1]}; missing {', '.join(missing)}")
    average_weights(unet, paths)
    logger.info("weights averaged over the checkpoints of epochs %d-%d", epochs[0], epochs[-1])
    return info.replace(provenance={**info.provenance,
                                    "weight_average": {"epochs": epochs, "checkpoints": file_digests(paths)}})


def _recalibrated(
    unet: keras.Model, images: Callable[[], Iterable[Any]], info: ModelInfo, settings: TrainingSettings
) -> ModelInfo:
    """Recompute the batch-normalisation statistics; ``info`` with a record of it."""
    from .batch_norm import recalibrate_batch_norm

    started = time.perf_counter()
    n = recalibrate_batch_norm(unet, images())
    logger.info("batch-normalisation statistics recomputed from %d images (%.0f s)", n, time.perf_counter() - started)
    shape = settings.batch_norm_shape or info.generator.get("settings", {}).get("output_shape")
    return info.replace(provenance={**info.provenance, "batch_norm_statistics": {"images": n, "shape": shape}})


def _resume_point(model_dir: Path, info: ModelInfo, settings: TrainingSettings) -> Checkpoint | None:
    """The newest checkpoint, checked against the run's network and label table."""
    from .checkpoints import read_checkpoint

    found = list_checkpoints(model_dir)
    if not found:
        return None
    epoch, path = found[-1]
    if epoch > settings.epochs:
        raise SettingsError(f"{path}: a checkpoint of epoch {epoch}, beyond the {settings.epochs} epochs of this "
                            "run; raise 'epochs' or write to another folder")
    checkpoint = read_checkpoint(path)
    _check_compatible(checkpoint.path, checkpoint.info, info)
    return checkpoint


def _start_from(unet: keras.Model, initial_model: str | os.PathLike, info: ModelInfo) -> ModelInfo:
    """Copy an existing model's weights into ``unet`` (fine-tuning)."""
    contents = read_model_file(initial_model)
    _check_compatible(contents.path, contents.info, info)
    set_weights_from(contents, unet)
    logger.info("starting from the weights of %s", contents.path)
    start = {
        **file_digests([contents.path])[0],
        "steps_trained": int(contents.info.provenance.get("steps_trained", 0)),
        "training": contents.info.training,
        "generator_settings": contents.info.generator.get("settings"),
        "sessions": contents.info.provenance.get("sessions", []),
    }
    if "initial_model" in contents.info.provenance:  # a model that was itself fine-tuned: keep the chain
        start["initial_model"] = contents.info.provenance["initial_model"]
    return info.replace(provenance={**info.provenance, "initial_model": start})


def _check_compatible(path: Path, stored: ModelInfo, wanted: ModelInfo) -> None:
    if stored.label_table != wanted.label_table:
        raise ModelFileError(
            path,
            f"was trained for other labels ({stored.label_table.values.tolist()}) than this run "
            f"({wanted.label_table.values.tolist()})",
        )
    if stored.network != wanted.network:
        diff = {
            k: (v, getattr(wanted.network, k))
            for k, v in stored.network.to_dict().items()
            if v != wanted.network.to_dict()[k]
        }
        raise ModelFileError(path, f"has another network architecture than this run (file, run): {diff}")


def _with_progress(info: ModelInfo, epochs_done: int, settings: TrainingSettings) -> ModelInfo:
    """``info`` with this run's epochs and the model's total steps (those of an initial model included)."""
    earlier = int(info.provenance.get("initial_model", {}).get("steps_trained", 0))
    return info.replace(
        provenance={
            **info.provenance,
            "epochs_trained": int(epochs_done),
            "steps_trained": earlier + int(epochs_done * settings.steps_per_epoch),
            "saved": datetime.datetime.now().isoformat(timespec="seconds"),
        }
    )


def describe_environment() -> dict[str, Any]:
    """Backend, Keras version, devices, host and date of this training session."""
    try:
        devices = [str(d) for d in keras.distribution.list_devices()]
    except (RuntimeError, ValueError, NotImplementedError):
        devices = []
    return {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "devices": devices,
        "host": platform.node(),
        "platform": platform.platform(),
    }


def file_digests(paths: Iterable[str | os.PathLike]) -> list[dict[str, str]]:
    """``{"name": file name, "sha256": hex digest}`` of each file."""
    return [{"name": Path(path).name, "sha256": file_sha256(path)} for path in paths]
