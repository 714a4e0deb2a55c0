"""The BIDS layer (pybids): everything that knows BIDS names and datasets.

- :mod:`.names`: entities of file names (:func:`~.names.parse_entities`), the derivative
  naming scheme (:func:`~.names.derivative_path`, pybids ``build_path`` with
  :data:`~.names.DERIVATIVE_PATTERNS`), evaluation pairing keys (:func:`~.names.match_key`,
  :func:`~.names.scan_key`);
- :mod:`.dataset`: the input dataset: validation (:func:`~.dataset.validate_dataset`) and
  scan selection (:func:`~.dataset.collect_scans`);
- :mod:`.derivatives`: the output dataset: ``dataset_description.json``, ``dseg.tsv``,
  ``.bidsignore`` (:func:`~.derivatives.write_derivatives_description`), per-scan sidecars
  (:func:`~.derivatives.scan_sidecars`) and the done-check (:func:`~.derivatives.scan_is_done`).

Used by the command line (selection, done-check) and by the Nipype interfaces (names,
sidecars); it imports only :mod:`synthseg_bids.core` and pybids, never Nipype.
"""

from .dataset import BIDSError, collect_scans, find_validator, symlink_loops, validate_dataset
from .derivatives import (
    BIDS_VERSION,
    BIDSIGNORE,
    parcellation_sidecar,
    remove_stale_temporaries,
    scan_is_done,
    scan_sidecars,
    write_derivatives_description,
)
from .names import (
    DESC_PREFIX,
    PARCELLATION_VARIANT,
    derivative_path,
    is_parcellation,
    match_key,
    parse_entities,
    scan_key,
    source_contrast,
)

__all__ = [
    "BIDSError",
    "BIDSIGNORE",
    "BIDS_VERSION",
    "DESC_PREFIX",
    "PARCELLATION_VARIANT",
    "collect_scans",
    "derivative_path",
    "find_validator",
    "is_parcellation",
    "match_key",
    "parcellation_sidecar",
    "parse_entities",
    "remove_stale_temporaries",
    "scan_is_done",
    "scan_key",
    "scan_sidecars",
    "source_contrast",
    "symlink_loops",
    "validate_dataset",
    "write_derivatives_description",
]
