"""Nipype interfaces of the reports: thin calls to :mod:`synthseg_bids.reports`.

- :class:`SegmentationFigure`: the scan's mosaic (plain and overlaid halves) and its thumbnail;
- :class:`SubjectReport`: ``<output_dir>/sub-<label>.html`` from the derivatives on disk;
- :class:`GroupReport`: ``<output_dir>/group/report.html`` from the group tables.
"""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..reports.figures import plot_mosaic, plot_thumbnail
from ..reports.group import write_group_report
from ..reports.subject import write_subject_report

__all__ = ["GroupReport", "SegmentationFigure", "SubjectReport"]


class _SegmentationFigureInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="the scan that was segmented")
    in_dseg = File(exists=True, mandatory=True, desc="its label map (same grid)")


class _SegmentationFigureOutputSpec(TraitedSpec):
    out_figure = File(exists=True, desc="PNG: mosaic of the plain scan (top half) and with its labels (bottom half)")
    out_thumbnail = File(exists=True, desc="PNG: small coronal and axial overlay for the group report")


class SegmentationFigure(SimpleInterface):
    """The report figures of one segmentation (:func:`~synthseg_bids.reports.figures.plot_mosaic`, ``plot_thumbnail``)."""

    input_spec = _SegmentationFigureInputSpec
    output_spec = _SegmentationFigureOutputSpec

    def _run_interface(self, runtime):
        cwd = Path(runtime.cwd)
        self._results["out_figure"] = str(plot_mosaic(self.inputs.in_file, self.inputs.in_dseg, cwd / "figure.png"))
        self._results["out_thumbnail"] = str(plot_thumbnail(self.inputs.in_file, self.inputs.in_dseg,
                                                            cwd / "thumbnail.png"))
        return runtime


class _SubjectReportInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(mandatory=True, desc="derivatives folder (created when missing)")
    subject = traits.Str(mandatory=True, desc="subject label without sub-")
    versions = traits.Dict(traits.Str, traits.Str, desc="versions, command and run id for the summary and methods")
    errors = traits.List(traits.Str, desc="failures of this run ('<scan file>: <message>'), listed in the report")
    wait_for = traits.List(traits.Any, desc="any outputs to wait for before writing (ordering only)")


class _SubjectReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="sub-<label>.html")


class SubjectReport(SimpleInterface):
    """Write a subject's HTML report from its derivatives (see :func:`~synthseg_bids.reports.subject.write_subject_report`).

    Always runs (the derivatives on disk are its real input, and they change between runs).
    """

    input_spec = _SubjectReportInputSpec
    output_spec = _SubjectReportOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        out = write_subject_report(self.inputs.output_dir, self.inputs.subject,
                                   versions=dict(self.inputs.versions or {}), errors=list(self.inputs.errors or []))
        self._results["out_report"] = str(out)
        return runtime


class _GroupReportInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(exists=True, mandatory=True, desc="derivatives folder of the participant level")
    in_volumes = File(exists=True, mandatory=True, desc="group volumes table")
    in_incomplete = File(exists=True, mandatory=True, desc="JSON list of the incomplete per-scan tables")
    in_tsvs = InputMultiObject(File(exists=True), desc="per-scan volumes tables (their sidecars name the columns)")
    participants_tsv = File(desc="the input dataset's participants.tsv (age/sex plots when present)")
    z_threshold = traits.Float(3.0, usedefault=True, desc="|z| above which a structure's share of TIV is an outlier")
    wait_for = traits.List(traits.Any, desc="the group tables, written before the report (ordering only)")


class _GroupReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="group/report.html")


class GroupReport(SimpleInterface):
    """Write the group report (see :func:`~synthseg_bids.reports.group.write_group_report`)."""

    input_spec = _GroupReportInputSpec
    output_spec = _GroupReportOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        participants = self.inputs.participants_tsv if isdefined(self.inputs.participants_tsv) else None
        out = write_group_report(
            self.inputs.output_dir, self.inputs.in_volumes, tables=list(self.inputs.in_tsvs or []),
            incomplete=json.loads(Path(self.inputs.in_incomplete).read_text()), participants_tsv=participants,
            z_threshold=self.inputs.z_threshold,
        )
        self._results["out_report"] = str(out)
        return runtime
