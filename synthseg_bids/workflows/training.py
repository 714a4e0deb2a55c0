"""Training: generate synthetic examples -> train -> validate checkpoints."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.training import GenerateImages, TrainModel, ValidateCheckpoints

__all__ = ["init_training_wf"]


def init_training_wf(
    *,
    generator_settings: dict | None = None,
    network_settings: dict | None = None,
    training_settings: dict | None = None,
    n_validation: int = 2,
    seed: int = 0,
    omp_nthreads: int = 1,
    name: str = "training_wf",
):
    """Train a segmentation model on synthetic images and validate its checkpoints.

    A validation set is synthesised from the same label maps with another seed
    (``seed + 1``), so the validation images are not those seen in training.

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from synthseg_bids.workflows.training import init_training_wf
            wf = init_training_wf()

    Parameters
    ----------
    generator_settings, network_settings, training_settings : dict, optional
        Fields of :class:`~synthseg_bids.generator.GeneratorSettings`,
        :class:`~synthseg_bids.network.NetworkSettings` and
        :class:`~synthseg_bids.training.TrainingSettings` (defaults: SynthSeg's).
    n_validation : int
        Synthetic validation examples.
    seed : int
        Seed of the validation set generation.
    omp_nthreads : int
        CPU threads of the training node (scheduler hint).
    name : str
        Workflow name.

    Inputs
    ------
    label_maps
        Training label maps (one shape).
    model_dir
        Output folder of the training run (optional; default: in the work folder).

    Outputs
    -------
    out_model
        The trained model file.
    validation
        TSV of validation scores per checkpoint.
    best_checkpoint
        Checkpoint with the best mean Dice.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["label_maps", "model_dir"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_model", "validation", "best_checkpoint"]),
                         name="outputnode")
    generate = pe.Node(GenerateImages(n_images=n_validation, seed=seed + 1), name="generate_validation")
    train = pe.Node(TrainModel(), name="train", n_procs=omp_nthreads)
    validate = pe.Node(ValidateCheckpoints(), name="validate")
    if generator_settings:
        generate.inputs.settings = dict(generator_settings)
        train.inputs.generator_settings = dict(generator_settings)
    if network_settings:
        train.inputs.network_settings = dict(network_settings)
    if training_settings:
        train.inputs.training_settings = dict(training_settings)
    workflow.connect([
        (inputnode, generate, [("label_maps", "label_maps")]),
        (inputnode, train, [("label_maps", "label_maps"), ("model_dir", "model_dir")]),
        (train, validate, [("model_dir", "model_dir")]),
        (generate, validate, [("out_images", "images"), ("out_labels", "labels")]),
        (train, outputnode, [("out_model", "out_model")]),
        (validate, outputnode, [("out_table", "validation"), ("best_checkpoint", "best_checkpoint")]),
    ])  # fmt: skip
    return workflow
