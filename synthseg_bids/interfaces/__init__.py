"""Nipype interfaces: one thin ``SimpleInterface`` per step over the lower layers.

- :mod:`.segmentation`: :class:`~.segmentation.SynthSeg` (segment a scan; model cached per process);
- :mod:`.volumes`: :class:`~.volumes.VolumesTable`, :class:`~.volumes.GroupVolumes`;
- :mod:`.bids`: :class:`~.bids.DerivativesDataSink`, :class:`~.bids.ScanSidecars` (names and
  sidecars from :mod:`synthseg_bids.bids`);
- :mod:`.reports`: :class:`~.reports.SegmentationFigure`, :class:`~.reports.SubjectReport`,
  :class:`~.reports.GroupReport` (thin calls to :mod:`synthseg_bids.reports`);
- :mod:`.training`: :class:`~.training.GenerateImages`, :class:`~.training.TrainModel`,
  :class:`~.training.ValidateCheckpoints`;
- :mod:`.evaluation`: :class:`~.evaluation.EvaluateSegmentations`, :class:`~.evaluation.CompareMethods`.
"""
