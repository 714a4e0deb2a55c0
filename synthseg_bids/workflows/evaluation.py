"""Evaluation: predictions vs references -> metrics -> statistics."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.evaluation import CompareMethods, EvaluateSegmentations

__all__ = ["init_evaluation_wf"]


def init_evaluation_wf(*, compare: bool = False, percentile: float = 95.0, name: str = "evaluation_wf"):
    """Score segmentations against references and, optionally, compare with a second method.

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from synthseg_bids.workflows.evaluation import init_evaluation_wf
            wf = init_evaluation_wf(compare=True)

    Parameters
    ----------
    compare : bool
        Also score ``compare_predictions`` and run the paired Wilcoxon test per
        structure and metric (Holm-corrected).
    percentile : float
        Hausdorff distance percentile.
    name : str
        Workflow name.

    Inputs
    ------
    predictions
        This method's label maps.
    reference_dir
        Folder of reference label maps (paired by sub/ses/acq/run).
    compare_predictions
        The other method's label maps (with ``compare``).

    Outputs
    -------
    scores, summary
        Tidy scores and per-structure summary of ``predictions``.
    compare_scores, compare_summary, comparison
        The same for ``compare_predictions``, and the Wilcoxon table (with ``compare``).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["predictions", "reference_dir", "compare_predictions"]),
                        name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["scores", "summary", "compare_scores", "compare_summary", "comparison"]),
        name="outputnode",
    )
    evaluate = pe.Node(EvaluateSegmentations(percentile=percentile), name="evaluate")
    workflow.connect([
        (inputnode, evaluate, [("predictions", "predictions"), ("reference_dir", "reference_dir")]),
        (evaluate, outputnode, [("out_scores", "scores"), ("out_summary", "summary")]),
    ])  # fmt: skip
    if compare:
        evaluate_b = pe.Node(EvaluateSegmentations(percentile=percentile), name="evaluate_compare")
        stats = pe.Node(CompareMethods(), name="compare")
        workflow.connect([
            (inputnode, evaluate_b, [("compare_predictions", "predictions"), ("reference_dir", "reference_dir")]),
            (evaluate, stats, [("out_scores", "scores_a")]),
            (evaluate_b, stats, [("out_scores", "scores_b")]),
            (evaluate_b, outputnode, [("out_scores", "compare_scores"), ("out_summary", "compare_summary")]),
            (stats, outputnode, [("out_table", "comparison")]),
        ])  # fmt: skip
    return workflow
