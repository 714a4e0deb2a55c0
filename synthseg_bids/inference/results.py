"""What segmenting a scan gives (:class:`SegmentationResult`) and how it is written (:func:`write_result`)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import Image, atomic_path, save_image, strip_image_suffix, table_text
from ..core.labels import LabelTable
from ..core.volumes import FLAG_TEXT, QC_FORMAT, VOLUME_FORMAT
from .qc import QualityControl

__all__ = ["SegmentationResult", "write_result"]


@dataclass
class SegmentationResult:
    """Everything a segmenter (:class:`~.protocol.SegmenterProtocol`) computes for one scan.

    Attributes
    ----------
    labels : Image
        int32 FreeSurfer label values on the input grid (input shape and affine).
    labels_conformed : Image
        int32 labels on the model's grid (RAS, model resolution) covering the scan.
    posteriors : ndarray or None
        float32 ``(X, Y, Z, K)`` on the input grid, channel ``k`` = ``label_table.values[k]``;
        only when asked for.
    volumes : dict
        Structure name -> mm^3 from the posteriors (background left out), then
        ``"total intracranial"``.
    qc : QualityControl
        The posterior-based quality control.
    timings : dict
        Seconds spent in 'load', 'preprocess', 'network' (the network passes with the
        flip averaging, smoothing and masks next to them), 'postprocess', 'official' (the
        parcellation and QC networks, when they ran) and 'total'.
    label_table : LabelTable
    source : Path or None
        The scan's file.
    resampled : Image or None
        The scan as the network saw it: normalised intensities (float32) on the model's
        grid (RAS, model resolution); only when asked for.
    parcellation : Image or None
        With a parcellation network: the label map with each cortex voxel given its
        Desikan-Killiany parcel (input grid).
    parcel_volumes : dict
        With a parcellation network: parcel name -> mm^3 (they add up to the cortex volume
        of ``volumes``); else empty.
    parcellation_table : LabelTable or None
        With a parcellation network: the parcels (background first).
    network_qc : dict or None
        With a QC network: QC group name -> score in [0, 1] (rounded to 4 decimals).
    networks : tuple of dict
        What :meth:`provenance` returns.
    """

    labels: Image
    labels_conformed: Image
    posteriors: np.ndarray | None
    volumes: dict[str, float]
    qc: QualityControl
    timings: dict[str, float]
    label_table: LabelTable
    source: Path | None = None
    resampled: Image | None = None
    parcellation: Image | None = None
    parcel_volumes: dict[str, float] = field(default_factory=dict)
    parcellation_table: LabelTable | None = None
    network_qc: dict[str, float] | None = None
    networks: tuple[dict[str, str], ...] = ()

    def provenance(self) -> list[dict[str, str]]:
        """The networks that made this result: role, kind, description, path and sha256 of each
        (the segmenter's :meth:`~.protocol.SegmenterProtocol.provenance`)."""
        return [dict(entry) for entry in self.networks]


def write_result(
    result: SegmentationResult,
    *,
    labels: str | os.PathLike | None = None,
    labels_conformed: str | os.PathLike | None = None,
    posteriors: str | os.PathLike | None = None,
    volumes: str | os.PathLike | None = None,
    qc: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write the chosen outputs of ``result``, all or none.

    Every file is first written under a temporary name next to its destination; they are
    renamed into place only once all are complete, so an error leaves no new file.

    Parameters
    ----------
    labels, labels_conformed : path, optional
        Label maps (.nii/.nii.gz/.mgz; int16 FreeSurfer values).
    posteriors : path, optional
        4D float32 posteriors on the input grid (``result.posteriors`` must exist).
    volumes : path, optional
        CSV, one header row and one row: ``scan``, each structure (mm^3), total intracranial.
    qc : path, optional
        CSV, one row: ``scan``, each QC score, ``flag``.

    Returns
    -------
    dict
        Output name -> path written.
    """
    if posteriors is not None and result.posteriors is None:
        raise ValueError("posteriors were not computed: call segment(..., posteriors=True)")
    scan = strip_image_suffix(result.source) if result.source is not None else ""
    written: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:

        def temporary(name: str, path: str | os.PathLike) -> Path:
            written[name] = Path(path)
            return stack.enter_context(atomic_path(path))

        if labels is not None:
            tmp = temporary("labels", labels)
            save_image(result.labels.data, result.labels.affine, tmp, dtype=np.int16, header=result.labels.header)
        if labels_conformed is not None:
            tmp = temporary("labels_conformed", labels_conformed)
            save_image(result.labels_conformed.data, result.labels_conformed.affine, tmp, dtype=np.int16)
        if posteriors is not None:
            tmp = temporary("posteriors", posteriors)
            save_image(result.posteriors, result.labels.affine, tmp, dtype=np.float32, header=result.labels.header)
        if volumes is not None:
            tmp = temporary("volumes", volumes)
            row = {"scan": scan, **{name: VOLUME_FORMAT % v for name, v in result.volumes.items()}}
            tmp.write_text(table_text(pd.DataFrame([row]), sep=","))
        if qc is not None:
            tmp = temporary("qc", qc)
            scores = result.qc.scores
            row = {"scan": scan, **{name: QC_FORMAT % v for name, v in scores.items()}, "flag": FLAG_TEXT[result.qc.flag]}
            tmp.write_text(table_text(pd.DataFrame([row]), sep=","))
    return written


