"""Participant-level workflows: every selected scan of every selected subject."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from .config import AppConfig
from .outputs import init_derivatives_wf
from .segmentation import init_segmentation_wf

__all__ = ["init_participant_wf", "init_single_subject_wf", "scan_workflow_name"]


def scan_workflow_name(scan: str | Path) -> str:
    """Nipype-safe, unique workflow name of a scan: ``sub-01_ses-1_T1w`` -> ``scan_sub_01_ses_1_T1w_wf``."""
    stem = Path(scan).name.split(".")[0]
    return "scan_" + re.sub(r"[^A-Za-z0-9]", "_", stem) + "_wf"


def init_participant_wf(
    *,
    config: AppConfig,
    subjects: Mapping[str, Sequence[str]],
    metadata: dict | None = None,
    name: str = "synthseg_bids_wf",
):
    """Segment the selected scans of every selected subject and write the derivatives.

    Workflow Graph
        .. workflow::
            :graph2use: orig
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
        Subject label (no ``sub-``) -> scans to segment (already filtered: scans that
        an earlier run finished are left out by the caller).
    metadata : dict, optional
        Provenance stored in every volumes sidecar (see :func:`init_derivatives_wf`).
    name : str
        Workflow name.
    """
    workflow = pe.Workflow(name=name)
    if config.work_dir:
        workflow.base_dir = str(config.work_dir)
    for subject, scans in sorted(subjects.items()):
        if not scans:
            continue
        single = init_single_subject_wf(
            subject_label=subject, scans=scans, config=config, metadata=metadata, name=f"sub_{subject}_wf"
        )
        workflow.add_nodes([single])
    return workflow


def init_single_subject_wf(
    *,
    subject_label: str,
    scans: Sequence[str],
    config: AppConfig,
    metadata: dict | None = None,
    name: str = "single_subject_wf",
):
    """One subject: a segmentation and a derivatives sub-workflow per scan.

    Scans are independent branches, so one scan's failure does not stop the others
    (with ``stop_on_first_crash`` off). The subject's HTML report is written by the
    caller after the run, from the derivatives on disk, so that it also lists scans
    done by earlier runs and failures.

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
        The subject's scans to segment.
    config : AppConfig
        The run's configuration.
    metadata : dict, optional
        Provenance for the volumes sidecars.
    name : str
        Workflow name.

    Inputs
    ------
    (none: each scan is set on its own ``inputnode``)

    Outputs
    -------
    (none: results go to ``config.output_dir``)
    """
    workflow = pe.Workflow(name=name)
    meta = {"bids_dir": str(config.bids_dir), **dict(metadata or {})}
    overrides = config.inference_overrides()
    for scan in scans:
        scan_wf = pe.Workflow(name=scan_workflow_name(scan))
        inputnode = pe.Node(niu.IdentityInterface(fields=["source_file"]), name="inputnode")
        inputnode.inputs.source_file = str(scan)
        seg_wf = init_segmentation_wf(
            model=str(config.model) if config.model else None,
            device=config.device,
            omp_nthreads=config.threads_per_scan,
            write_posteriors=config.write_posteriors,
            inference_settings=overrides,
        )
        ds_wf = init_derivatives_wf(output_dir=str(config.output_dir), write_posteriors=config.write_posteriors,
                                    metadata=meta)
        scan_wf.connect([
            (inputnode, seg_wf, [("source_file", "inputnode.in_file"), ("source_file", "inputnode.source_file")]),
            (inputnode, ds_wf, [("source_file", "inputnode.source_file")]),
            (seg_wf, ds_wf, [
                ("outputnode.out_dseg", "inputnode.out_dseg"),
                ("outputnode.out_volumes", "inputnode.out_volumes"),
                ("outputnode.out_results", "inputnode.out_results"),
                ("outputnode.out_figure", "inputnode.out_figure"),
            ]),
        ])  # fmt: skip
        if config.write_posteriors:
            scan_wf.connect(seg_wf, "outputnode.out_probseg", ds_wf, "inputnode.out_probseg")
        workflow.add_nodes([scan_wf])
    return workflow
