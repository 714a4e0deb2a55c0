"""What every segmenter answers: the calls the command line, the Nipype interface and the
benchmarks make, whichever networks run behind them.

Two classes follow it: :class:`~.segmenter.Segmenter` (one network, a model file of this
package or any callable) and :class:`~.official.OfficialSegmenter` (SynthSeg's published
networks: segmentation, and optionally parcellation and QC). Both return one result type,
:class:`~.results.SegmentationResult`, whose optional fields (``parcellation``,
``network_qc``...) are set by the networks that ran. Callers outside this package use this
protocol only, never the concrete class.

Scans in a known order overlap one way: right after a scan's result, the caller announces
the next scan (:meth:`SegmenterProtocol.segment_ahead`), which is then segmented in a
background thread while the caller writes this one's files (:mod:`.look_ahead`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..core.io import Image
from ..core.labels import LabelTable
from .results import SegmentationResult
from .runtime import Network
from .settings import InferenceSettings

__all__ = ["SegmenterProtocol"]


@runtime_checkable
class SegmenterProtocol(Protocol):
    """A loaded model that segments scans.

    Attributes
    ----------
    settings : InferenceSettings
        The settings the segmentation network runs with.
    network : Network
        The segmentation network (its device, precision, resolution and size multiple).
    label_table : LabelTable
        The segmentation's labels.
    model_path : Path or None
        The segmentation network's file.
    model_info : Any
        The segmentation network's metadata (a :class:`~synthseg_bids.network.ModelInfo` or
        an :class:`~synthseg_bids.network.OfficialNetwork`).
    """

    @property
    def settings(self) -> InferenceSettings: ...

    @property
    def network(self) -> Network: ...

    @property
    def label_table(self) -> LabelTable: ...

    @property
    def model_path(self) -> Path | None: ...

    @property
    def model_info(self) -> Any: ...

    def segment(
        self, scan: str | os.PathLike | Image, *, posteriors: bool = False, resampled: bool = False
    ) -> SegmentationResult:
        """Segment one scan (file or image); ``posteriors``, ``resampled``: also return those.

        Raises :class:`~synthseg_bids.core.io.ImageError` (naming the file) for a scan that
        cannot be used.
        """

    def segment_ahead(self, scan: str | os.PathLike, *, posteriors: bool = False, resampled: bool = False) -> bool:
        """Start segmenting the file ``scan`` in the background for the next :meth:`segment`
        call with the same arguments; whether it started (``False`` for a missing file)."""

    def provenance(self) -> list[dict[str, str]]:
        """Role, kind, description, path and sha256 of every network used."""

    def describe(self) -> str:
        """One line naming the model file and, for several networks, what each is."""

    def model_summary(self) -> dict[str, Any]:
        """The model as the sidecars and methods text report it (file, kind or version,
        architecture, training)."""
