"""Participant-level workflows: every selected scan of every selected subject, and their reports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..inference.memory import segmentation_mem_gb
from ..interfaces.reports import SubjectReport
from ..reports.methods import closing_text, intro_text
from .config import AppConfig
from .outputs import init_derivatives_wf
from .segmentation import configured_settings, init_segmentation_wf

__all__ = [
    "init_participant_wf",
    "init_reports_wf",
    "init_single_subject_wf",
    "scan_crashdump_dir",
    "scan_workflow_name",
    "segmentation_order",
]


def scan_workflow_name(scan: str | Path) -> str:
    """Nipype-safe, unique workflow name of a scan: ``sub-01_ses-1_T1w`` -> ``scan_sub_01_ses_1_T1w_wf``."""
    stem = Path(scan).name.split(".")[0]
    return "scan_" + re.sub(r"[^A-Za-z0-9]", "_", stem) + "_wf"


def scan_crashdump_dir(crashdump_dir: str | Path, scan: str | Path) -> Path:
    """Folder of one scan's Nipype crash files: ``<crashdump_dir>/<scan name without extension>``."""
    return Path(crashdump_dir) / Path(scan).name.split(".")[0]


def segmentation_order(subjects: Mapping[str, Sequence[str]]) -> list[str]:
    """The scans in the order a one-node-at-a-time run segments them: subjects sorted, then each one's scans."""
    return [str(scan) for _, scans in sorted(subjects.items()) for scan in scans]


def init_participant_wf(
    *,
    config: AppConfig,
    subjects: Mapping[str, Sequence[str]],
    metadata: dict | None = None,
    versions: dict[str, str] | None = None,
    crashdump_dir: str | Path | None = None,
    look_ahead: bool = False,
    name: str = "synthseg_bids_wf",
):
    """Segment the selected scans of every selected subject, write the derivatives and reports.

    Workflow Graph
        .. workflow::
            :graph2use: colored
            :simple_form: yes

            from synthseg_bids.workflows.base import init_participant_wf
            from synthseg_bids.workflows.config import AppConfig
            wf = init_participant_wf(
                config=AppConfig(bids_dir="/data", output_dir="/out"),
                subjects={"01": ["/data/sub-01/anat/sub-01_T1w.nii.gz"]},
            )

    Parameters
    ----------
    config : AppConfig
        The run's configuration (model, device, threads, output folder...).
    subjects : mapping
        Subject label (no ``sub-``) -> scans to segment. A subject whose scans an
        earlier run finished (empty list) still gets its report rewritten.
    metadata : dict, optional
        Provenance stored in every volumes sidecar (see :func:`init_derivatives_wf`).
    versions : dict, optional
        Software versions and model for the reports' methods text.
    crashdump_dir : path-like, optional
        Each scan's crash files go to :func:`scan_crashdump_dir` under it, so a failure
        is traced to its scan by folder (default: Nipype's ``crashdump_dir``).
    look_ahead : bool
        The workflow runs one node at a time, scan by scan in :func:`segmentation_order`
        (:class:`~synthseg_bids.cli.plugins.ScanFirstLinearPlugin`): each scan's
        segmentation node starts the next scan's in the background (``next_file`` of
        :func:`~synthseg_bids.workflows.segmentation.init_segmentation_wf`).
    name : str
        Workflow name.
    """
    workflow = pe.Workflow(name=name)
    versions = dict(versions or {})
    settings = configured_settings(config.inference_overrides())
    thresholds = {"confidence": settings["qc_min_confidence"]}
    if settings["flip"]:
        thresholds["flip dice"] = settings["qc_min_flip_dice"]
    # methods text: this paragraph, each scan workflow's (segmentation settings), then the closing one
    workflow.__desc__ = intro_text(versions.get("version", ""), [versions["model_sha256"]]
                                   if versions.get("model_sha256") else [])
    workflow.__postdesc__ = closing_text(thresholds, versions)
    if config.work_dir:
        workflow.base_dir = str(config.work_dir)
    order = segmentation_order(subjects)
    following = dict(zip(order, order[1:])) if look_ahead else {}
    for subject, scans in sorted(subjects.items()):
        single = init_single_subject_wf(
            subject_label=subject, scans=scans, config=config, metadata=metadata, versions=versions,
            crashdump_dir=crashdump_dir, next_scans=following, name=f"sub_{subject}_wf",
        )
        workflow.add_nodes([single])
    return workflow


def init_single_subject_wf(
    *,
    subject_label: str,
    scans: Sequence[str],
    config: AppConfig,
    metadata: dict | None = None,
    versions: dict[str, str] | None = None,
    crashdump_dir: str | Path | None = None,
    next_scans: Mapping[str, str] | None = None,
    name: str = "single_subject_wf",
):
    """One subject: per scan segmentation -> derivatives (label map, tables, figure); then the report.

    Scans are independent branches, so one scan's failure does not stop the others
    (with ``stop_on_first_crash`` off). The subject's HTML report (``SubjectReport``,
    ``<output_dir>/sub-<label>.html``) is written last, from the derivatives on disk, so
    it also shows scans done by earlier runs. It waits for every scan, so Nipype skips
    it when a scan fails; :func:`init_reports_wf` then writes it with the failures.

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from synthseg_bids.workflows.base import init_single_subject_wf
            from synthseg_bids.workflows.config import AppConfig
            wf = init_single_subject_wf(
                subject_label="01",
                scans=["/data/sub-01/anat/sub-01_T1w.nii.gz", "/data/sub-01/anat/sub-01_T2w.nii.gz"],
                config=AppConfig(bids_dir="/data", output_dir="/out"),
            )

    Parameters
    ----------
    subject_label : str
        Label without ``sub-``.
    scans : sequence of str
        The subject's scans to segment (may be empty: only the report is written).
    config : AppConfig
        The run's configuration.
    metadata : dict, optional
        Provenance for the volumes sidecars.
    versions : dict, optional
        Software versions and model for the report's methods text.
    crashdump_dir : path-like, optional
        Parent of the per-scan crash folders (see :func:`init_participant_wf`).
    next_scans : mapping, optional
        Scan -> the scan segmented after it in this process (``look_ahead`` of
        :func:`init_participant_wf`).
    name : str
        Workflow name.

    Inputs
    ------
    (none: each scan is set on its own ``inputnode``)

    Outputs
    -------
    outputnode.out_report
        The subject's HTML report (results go to ``config.output_dir``).
    """
    workflow = pe.Workflow(name=name)
    meta = {"bids_dir": str(config.bids_dir), **dict(metadata or {})}
    overrides = config.inference_overrides()
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_report"]), name="outputnode")
    wait = pe.Node(niu.Merge(max(len(scans), 1)), name="wait_for_scans", run_without_submitting=True)
    report = pe.Node(SubjectReport(output_dir=str(config.output_dir), subject=subject_label,
                                   versions=dict(versions or {})), name="report", run_without_submitting=True)
    workflow.connect([
        (wait, report, [("out", "wait_for")]),
        (report, outputnode, [("out_report", "out_report")]),
    ])  # fmt: skip
    if not scans:
        wait.inputs.in1 = []
    for index, scan in enumerate(scans, start=1):
        scan_wf = pe.Workflow(name=scan_workflow_name(scan))
        inputnode = pe.Node(niu.IdentityInterface(fields=["source_file"]), name="inputnode")
        inputnode.inputs.source_file = str(scan)
        seg_wf = init_segmentation_wf(
            model=config.model,
            device=config.device,
            omp_nthreads=config.threads_per_scan,
            write_posteriors=config.write_posteriors,
            mem_gb=segmentation_mem_gb(scan, posteriors=config.write_posteriors, crop=overrides.get("crop")),
            inference_settings=overrides,
            next_file=(next_scans or {}).get(str(scan)),
        )
        ds_wf = init_derivatives_wf(output_dir=str(config.output_dir), write_posteriors=config.write_posteriors,
                                    parcellation=config.model.parcellation, metadata=meta)
        scan_wf.connect([
            (inputnode, seg_wf, [("source_file", "inputnode.in_file"), ("source_file", "inputnode.source_file")]),
            (inputnode, ds_wf, [("source_file", "inputnode.source_file")]),
            (seg_wf, ds_wf, [
                ("outputnode.out_dseg", "inputnode.out_dseg"),
                ("outputnode.out_volumes", "inputnode.out_volumes"),
                ("outputnode.out_results", "inputnode.out_results"),
                ("outputnode.out_figure", "inputnode.out_figure"),
                ("outputnode.out_thumbnail", "inputnode.out_thumbnail"),
            ]),
        ])  # fmt: skip
        if config.write_posteriors:
            scan_wf.connect(seg_wf, "outputnode.out_probseg", ds_wf, "inputnode.out_probseg")
        if config.model.parcellation:
            scan_wf.connect(seg_wf, "outputnode.out_parc_dseg", ds_wf, "inputnode.out_parc_dseg")
        if crashdump_dir is not None:
            # as fMRIPrep does per subject: a node's own config wins over the workflow's
            where = str(scan_crashdump_dir(crashdump_dir, scan))
            for node in scan_wf._get_all_nodes():
                node.config = {"execution": {"crashdump_dir": where}}
        workflow.connect(scan_wf, "ds_segmentation_wf.outputnode.volumes", wait, f"in{index}")
    return workflow


def init_reports_wf(
    *,
    output_dir: str | Path,
    errors: Mapping[str, Sequence[str]],
    versions: dict[str, str] | None = None,
    name: str = "reports_wf",
):
    """Reports of subjects whose participant workflow failed, listing the failures.

    Nipype skips a subject's report node when one of its scans fails (the node waits
    for every scan); this workflow writes those reports afterwards, from the
    derivatives on disk plus the failure messages.

    Workflow Graph
        .. workflow::
            :graph2use: colored
            :simple_form: yes

            from synthseg_bids.workflows.base import init_reports_wf
            wf = init_reports_wf(output_dir=".", errors={"01": ["sub-01_T1w.nii.gz: failed"]})

    Parameters
    ----------
    output_dir : path-like
        Derivatives folder.
    errors : mapping
        Subject label -> one message per failed scan.
    versions : dict, optional
        Software versions and model for the methods text.
    name : str
        Workflow name.
    """
    workflow = pe.Workflow(name=name)
    for subject, messages in sorted(errors.items()):
        node = pe.Node(SubjectReport(output_dir=str(output_dir), subject=subject, versions=dict(versions or {}),
                                     errors=list(messages)), name=f"report_sub_{subject}")
        workflow.add_nodes([node])
    return workflow
