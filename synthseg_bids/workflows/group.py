"""Group level: gather volumes, summarise, evaluate against references, compare methods."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.reports import GroupReport
from ..interfaces.volumes import GroupVolumes
from .evaluation import init_evaluation_wf

__all__ = ["init_group_wf", "store_file"]


def init_group_wf(
    *,
    output_dir: str,
    volumes_files: Sequence[str],
    predictions: Sequence[str] = (),
    reference_dir: str | None = None,
    compare_dir: str | None = None,
    participants_tsv: str | None = None,
    name: str = "group_wf",
):
    """Group tables in ``<output_dir>/group/``.

    Always: ``volumes.tsv`` (one row per scan), ``summary.tsv`` (per contrast and
    structure n/mean/std/min/max) and ``outliers.tsv`` (QC-flagged scans and volumes
    with ``|z| > 3`` within their contrast). With ``reference_dir``:
    ``evaluation_scores.tsv`` and ``evaluation_summary.tsv``; with ``compare_dir`` too:
    the other method's ``compare_scores.tsv``/``compare_summary.tsv`` and the paired
    Wilcoxon table ``comparison.tsv``. With ``compare_dir`` but no reference, the other
    method serves as reference: ``agreement_scores.tsv``/``agreement_summary.tsv``.
    Last, the group report ``report.html`` (:class:`~synthseg_bids.interfaces.reports.GroupReport`),
    next to the tables it shows.

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            import tempfile
            from pathlib import Path
            from synthseg_bids.workflows.group import init_group_wf
            out = Path(tempfile.mkdtemp())  # the interfaces check that their inputs exist
            table = out / "sub-01_desc-synthsegT1w_volumes.tsv"
            table.touch()
            wf = init_group_wf(output_dir=str(out), volumes_files=[str(table)])

    Parameters
    ----------
    output_dir : str
        Derivatives folder of the participant level.
    volumes_files : sequence of str
        Per-scan volumes TSVs.
    predictions : sequence of str
        Label maps to evaluate.
    reference_dir, compare_dir : str, optional
        Reference segmentations and a second method's outputs.
    participants_tsv : str, optional
        The input dataset's ``participants.tsv``: the report plots volumes against
        ``age`` (coloured by ``sex``) when it has that column.
    name : str
        Workflow name.
    """
    workflow = pe.Workflow(name=name)
    group_dir = str(Path(output_dir) / "group")
    gather = pe.Node(GroupVolumes(in_tsvs=list(volumes_files)), name="gather_volumes")

    def store(node_name, filename):
        node = pe.Node(niu.Function(function=store_file, input_names=["in_file", "out_file"],
                                    output_names=["out_file"]), name=node_name, run_without_submitting=True)
        node.inputs.out_file = str(Path(group_dir) / filename)
        return node

    report = pe.Node(GroupReport(output_dir=str(output_dir), in_tsvs=list(volumes_files)), name="report",
                     run_without_submitting=True)
    if participants_tsv and Path(participants_tsv).is_file():
        report.inputs.participants_tsv = str(participants_tsv)
    tables = pe.Node(niu.Merge(3), name="wait_for_tables", run_without_submitting=True)
    for slot, (field, filename) in enumerate((("out_volumes", "volumes.tsv"), ("out_summary", "summary.tsv"),
                                              ("out_outliers", "outliers.tsv")), start=1):
        ds_table = store(f"ds_{Path(filename).stem}", filename)
        workflow.connect([(gather, ds_table, [(field, "in_file")]), (ds_table, tables, [("out_file", f"in{slot}")])])
    workflow.connect([
        (gather, report, [("out_incomplete", "in_incomplete")]),
        (tables, report, [("out", "wait_for")]),
    ])  # fmt: skip
    workflow.connect(tables, ("out", _first), report, "in_volumes")

    if predictions and (reference_dir or compare_dir):
        compare = bool(reference_dir and compare_dir)
        eval_wf = init_evaluation_wf(compare=compare)
        eval_wf.inputs.inputnode.predictions = list(predictions)
        eval_wf.inputs.inputnode.reference_dir = reference_dir or compare_dir
        prefix = "evaluation" if reference_dir else "agreement"
        outputs = [("scores", f"{prefix}_scores.tsv"), ("summary", f"{prefix}_summary.tsv")]
        if compare:
            from ..interfaces.evaluation import label_maps_in

            eval_wf.inputs.inputnode.compare_predictions = [str(p) for p in label_maps_in(compare_dir)]
            outputs += [("compare_scores", "compare_scores.tsv"), ("compare_summary", "compare_summary.tsv"),
                        ("comparison", "comparison.tsv")]
        for field, filename in outputs:
            workflow.connect(eval_wf, f"outputnode.{field}", store(f"ds_{Path(filename).stem}", filename), "in_file")
    return workflow


def _first(files):
    return files[0]


def store_file(in_file, out_file):
    """Copy ``in_file`` to ``out_file`` atomically; returns ``out_file``."""
    import shutil

    from synthseg_bids.core.io import atomic_path

    with atomic_path(out_file) as tmp:
        shutil.copyfile(in_file, tmp)
    return out_file
