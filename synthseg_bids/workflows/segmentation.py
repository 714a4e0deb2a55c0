"""Segmentation of one scan, embeddable in fMRIPrep-style pipelines."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..inference.memory import segmentation_mem_gb
from ..inference.model_choice import ModelChoice
from ..interfaces.reports import SegmentationFigure
from ..interfaces.segmentation import SynthSeg
from ..interfaces.volumes import VolumesTable
from ..reports.methods import describe_record

__all__ = ["configured_settings", "init_segmentation_wf"]


def configured_settings(overrides: dict | None = None) -> dict:
    """The :class:`~synthseg_bids.inference.InferenceSettings` fields a segmentation runs with (defaults + ``overrides``)."""
    from ..inference.settings import InferenceSettings

    return {**InferenceSettings().to_dict(), **dict(overrides or {})}


def init_segmentation_wf(
    *,
    model: ModelChoice | None = None,
    device: str = "auto",
    omp_nthreads: int = 0,
    write_posteriors: bool = False,
    mem_gb: float | None = None,
    inference_settings: dict | None = None,
    next_file: str | None = None,
    name: str = "segmentation_wf",
):
    """Segment one anatomical scan of any contrast, and compute volumes, QC and a figure.

    Nothing is written outside the workflow's working folder: connect the outputs to
    a sink (:func:`~synthseg_bids.workflows.outputs.init_derivatives_wf`) or to further
    processing.

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from synthseg_bids.workflows.segmentation import init_segmentation_wf
            wf = init_segmentation_wf()

    Parameters
    ----------
    model : ModelChoice, optional
        A model file (``.npz``, or one of SynthSeg's Keras ``.h5`` segmentation networks), or
        a folder of SynthSeg's ``.h5`` networks (``$FREESURFER_HOME/models``) whose files
        ``v1``, ``robust``, ``parcellation`` and ``network_qc`` choose as ``mri_synthseg``
        does; ``None``: the model shipped with the package. Give absolute paths
        (:meth:`~synthseg_bids.inference.model_choice.ModelChoice.resolved`): the nodes run in
        folders of their own.
    device : {'auto', 'cpu', 'gpu'}
        Where the network runs.
    omp_nthreads : int
        TensorFlow threads of the segmentation node (0: TensorFlow's default), also its
        ``n_procs`` for the MultiProc scheduler.
    write_posteriors : bool
        Also output the 4D posteriors.
    mem_gb : float, optional
        Memory estimate (GB) of the segmentation node, for the MultiProc scheduler: pass
        :func:`~synthseg_bids.inference.memory.segmentation_mem_gb` of the scan (its header
        gives the grid). ``None``: the estimate for a 256^3 1 mm scan.
    inference_settings : dict, optional
        Other :class:`~synthseg_bids.inference.InferenceSettings` fields (flip,
        postprocess, min_size...).
    next_file : str, optional
        The scan that this process segments next, with the same settings, when the
        workflows run one node at a time in a known order (Nipype's Linear plugin): its
        segmentation starts in a background thread as soon as this scan's is done
        (:meth:`~synthseg_bids.inference.Segmenter.segment_ahead`), so that it overlaps the
        writing of this scan's outputs and its later nodes. Leave ``None`` when nodes run
        in other processes (MultiProc, batch plugins): the scan would be segmented twice.
    name : str
        Workflow name.

    Inputs
    ------
    in_file
        The scan (NIfTI or MGZ), any contrast and resolution.
    source_file
        BIDS source name used to label the volumes table (default: ``in_file``).

    Outputs
    -------
    out_dseg
        Label map on the scan's grid (FreeSurfer values).
    out_probseg
        4D posteriors (only with ``write_posteriors``).
    out_parc_dseg
        Label map with Desikan-Killiany parcels in the cortex (only with ``model.parcellation``).
    out_volumes
        One-row TSV: QC flag and scores, structure volumes (mm^3).
    out_results
        JSON with volumes, QC, label table and model.
    out_figure
        PNG mosaic of the scan, plain (top half) and with its labels (bottom half).
    out_thumbnail
        Small PNG overlay for the group report.
    """
    model = model if model is not None else ModelChoice()
    workflow = pe.Workflow(name=name)
    # methods text of what this workflow is configured to do (what ran is in each scan's sidecar)
    workflow.__desc__ = describe_record({"settings": configured_settings(inference_settings)})
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_file", "source_file"]), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(
            fields=["out_dseg", "out_probseg", "out_parc_dseg", "out_volumes", "out_results", "out_figure",
                    "out_thumbnail"]
        ),
        name="outputnode",
    )
    segment = pe.Node(
        SynthSeg(model=model.to_dict(), device=device, tf_threads=omp_nthreads, write_posteriors=write_posteriors),
        name="segment",
        n_procs=max(1, omp_nthreads),
        mem_gb=mem_gb if mem_gb is not None else segmentation_mem_gb(None, posteriors=write_posteriors),
    )
    if inference_settings:
        segment.inputs.settings = dict(inference_settings)
    if next_file:
        segment.inputs.next_file = str(next_file)
    # source_file defaults to in_file when not connected
    pick_source = pe.Node(niu.Function(function=_pick_source, output_names=["source_file"]), name="pick_source",
                          run_without_submitting=True)
    volumes = pe.Node(VolumesTable(), name="volumes", run_without_submitting=True)
    figure = pe.Node(SegmentationFigure(), name="figure")

    workflow.connect([
        (inputnode, segment, [("in_file", "in_file")]),
        (inputnode, pick_source, [("in_file", "in_file"), ("source_file", "source_file")]),
        (segment, volumes, [("out_results", "in_results")]),
        (pick_source, volumes, [("source_file", "source_file")]),
        (inputnode, figure, [("in_file", "in_file")]),
        (segment, figure, [("out_dseg", "in_dseg")]),
        (segment, outputnode, [("out_dseg", "out_dseg"), ("out_results", "out_results")]),
        (volumes, outputnode, [("out_tsv", "out_volumes")]),
        (figure, outputnode, [("out_figure", "out_figure"), ("out_thumbnail", "out_thumbnail")]),
    ])  # fmt: skip
    if write_posteriors:
        workflow.connect(segment, "out_probseg", outputnode, "out_probseg")
    if model.parcellation:
        workflow.connect(segment, "out_parc_dseg", outputnode, "out_parc_dseg")
    return workflow


def _pick_source(in_file, source_file=None):
    """``source_file`` if set, else ``in_file`` (Nipype passes unset inputs as Undefined)."""
    from nipype.interfaces.base import isdefined

    return source_file if source_file and isdefined(source_file) else in_file
