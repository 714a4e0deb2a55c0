"""BIDS entities of file names and the derivative naming scheme (pybids).

Parsing is pybids' :func:`~bids.layout.parse_file_entities`; a name counts as BIDS only
when :func:`~bids.layout.writing.build_path` with :data:`SOURCE_PATTERN` rebuilds it
exactly from those entities, so an entity pybids does not know, a label holding a path
part (``/``, ``..``, a space) or a missing suffix is refused instead of dropped.

Naming scheme
-------------
A derivative of ``<entities>_<contrast>.nii[.gz]`` (``sub-01_ses-1_acq-x_run-1_T2w.nii.gz``) is::

    <out>/sub-<s>[/ses-<t>]/anat/<entities>_desc-synthseg<contrast>_<suffix><ext>

built by ``build_path`` from :data:`DERIVATIVE_PATTERNS`: ALL source entities are kept in
BIDS order and the source contrast goes into the ``desc`` label (``desc-synthsegT1w``,
``desc-synthsegT2w``, ``desc-synthsegFLAIR``). ``desc`` is the last entity in BIDS order
and is allowed on every derivative suffix, so the names pass the BIDS validator; the T1w
and the T2w of one session never collide; and ``desc`` starting with ``synthseg`` says
which tool made the file. (``mod-<contrast>`` reads better but the validator accepts
``mod`` only for ``_defacemask``; ``space-T1w`` would wrongly claim a resampling.)
Suffixes written:

- ``_dseg.nii.gz`` + ``_dseg.json``: label map on the source grid, FreeSurfer values,
  looked up in the top-level ``dseg.tsv``;
- ``_probseg.nii.gz`` + ``.json`` (``--write-posteriors``): ONE 4D file, volume *i* is
  the posterior of row *i* of ``dseg.tsv`` (one file instead of 33 ``label-`` files);
- ``_volumes.tsv`` + ``_volumes.json``: one row of structure volumes (mm^3) and QC scores,
  the sidecar holds the provenance used to skip finished scans on re-runs (not a BIDS
  suffix: listed in the derivatives' ``.bidsignore``);
- ``sub-<s>/figures/<entities>_desc-synthseg<contrast>_dseg.png``: report figure;
- with SynthSeg's parcellation network (``--parc``): a second label map
  ``<entities>_desc-synthsegparc<contrast>_dseg.nii.gz`` + ``.json`` (``variant="parc"``),
  the segmentation with Desikan-Killiany parcels in its cortex, values in the same
  top-level ``dseg.tsv``. Evaluation skips it (:func:`is_parcellation`): its parcels are
  not the reference's structures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..core.evaluation import DEFAULT_STRIP_SUFFIXES
from ..core.evaluation import match_key as plain_match_key
from ..core.io import strip_image_suffix

__all__ = [
    "DERIVATIVE_PATTERNS",
    "DESC_PREFIX",
    "ENTITY_ORDER",
    "MATCH_ENTITIES",
    "SOURCE_PATTERN",
    "PARCELLATION_VARIANT",
    "derivative_path",
    "is_parcellation",
    "match_key",
    "parse_entities",
    "scan_key",
    "source_contrast",
]

#: ``desc`` label prefix of every derivative (followed by the source contrast).
DESC_PREFIX = "synthseg"

#: ``desc`` variant of the parcellation label map: ``desc-synthsegparc<contrast>``.
PARCELLATION_VARIANT = "parc"

#: Entities of anatomical scans, pybids names and BIDS keys, in BIDS order.
ENTITY_ORDER: tuple[tuple[str, str], ...] = (
    ("subject", "sub"), ("session", "ses"), ("task", "task"), ("acquisition", "acq"), ("ceagent", "ce"),
    ("reconstruction", "rec"), ("direction", "dir"), ("run", "run"), ("echo", "echo"), ("flip", "flip"),
    ("inv", "inv"), ("mt", "mt"), ("part", "part"), ("chunk", "chunk"),
)
_OPTIONAL = "".join(f"[_{key}-{{{name}}}]" for name, key in ENTITY_ORDER[1:])
#: Pattern a source scan's file name must match exactly (``desc`` allowed: derivatives of other tools).
SOURCE_PATTERN = f"sub-{{subject}}{_OPTIONAL}[_desc-{{desc}}]_{{suffix}}{{extension}}"
#: The project's derivative names: anatomical data and sidecars, then report figures.
DERIVATIVE_PATTERNS: tuple[str, ...] = (
    "sub-{subject}[/ses-{session}]/{datatype<anat>}/"
    f"sub-{{subject}}{_OPTIONAL}_desc-{{desc}}_{{suffix<dseg|probseg|volumes>}}{{extension<.nii.gz|.nii|.json|.tsv>}}",
    "sub-{subject}/{datatype<figures>}/"
    f"sub-{{subject}}{_OPTIONAL}_desc-{{desc}}_{{suffix<dseg>}}{{extension<.png|.svg>}}",
)
#: Entities that identify an acquisition when pairing evaluation files.
MATCH_ENTITIES: tuple[str, ...] = ("subject", "session", "acquisition", "run")


def parse_entities(path: str | os.PathLike) -> dict[str, str]:
    """Entities (pybids names, string labels), ``suffix`` and ``extension`` of a BIDS file name.

    Only the file name counts (not its folders).

    >>> parse_entities("/d/sub-01/ses-1/anat/sub-01_ses-1_acq-x_run-01_T2w.nii.gz")
    {'subject': '01', 'session': '1', 'acquisition': 'x', 'run': '01', 'suffix': 'T2w', 'extension': '.nii.gz'}

    Raises
    ------
    ValueError
        The name is not ``sub-<label>[_<key>-<label>...]_<suffix><extension>`` with
        entities known to BIDS, in BIDS order, with alphanumeric labels.
    """
    from bids.layout import parse_file_entities
    from bids.layout.writing import build_path

    name = Path(path).name
    parsed = parse_file_entities("/" + name)
    parsed.pop("datatype", None)
    entities = {key: str(value) for key, value in parsed.items()}
    rebuilt = build_path(entities, [SOURCE_PATTERN], strict=True) if "subject" in entities else None
    if rebuilt != name:
        raise ValueError(f"{name}: not a BIDS file name (sub-<label>[_<key>-<label>...]_<suffix>, "
                         "entities in BIDS order, letters and digits only)")
    return entities


def source_contrast(path: str | os.PathLike) -> str:
    """The suffix of a source scan (``T1w``, ``T2w``, ``FLAIR``...)."""
    return parse_entities(path)["suffix"]


def derivative_path(
    source_file: str | os.PathLike,
    output_dir: str | os.PathLike,
    suffix: str,
    extension: str,
    *,
    datatype: str = "anat",
    variant: str = "",
) -> Path:
    """Derivative file name of a source scan (see the module docstring).

    ``variant`` goes between the ``synthseg`` prefix and the contrast in the ``desc`` label
    (:data:`PARCELLATION_VARIANT`: ``desc-synthsegparcT1w``); letters and digits only.

    >>> derivative_path("/d/sub-01/ses-1/anat/sub-01_ses-1_run-1_T2w.nii.gz", "/o", "dseg", ".nii.gz").as_posix()
    '/o/sub-01/ses-1/anat/sub-01_ses-1_run-1_desc-synthsegT2w_dseg.nii.gz'
    >>> derivative_path("/d/sub-01/anat/sub-01_T1w.nii", "/o", "dseg", ".png", datatype="figures").as_posix()
    '/o/sub-01/figures/sub-01_desc-synthsegT1w_dseg.png'
    >>> derivative_path("/d/sub-01/anat/sub-01_T1w.nii", "/o", "dseg", ".nii.gz", variant="parc").name
    'sub-01_desc-synthsegparcT1w_dseg.nii.gz'

    Raises
    ------
    ValueError
        ``source_file`` is not a BIDS name, or the derivative has no name in
        :data:`DERIVATIVE_PATTERNS` (unknown suffix, extension or datatype).
    """
    from bids.layout.writing import build_path

    if variant and not (variant.isascii() and variant.isalnum()):
        raise ValueError(f"derivative variant {variant!r}: letters and digits only")
    entities = parse_entities(source_file)
    contrast = entities.pop("suffix")
    entities.pop("desc", None)
    entities.update(desc=f"{DESC_PREFIX}{variant}{contrast}", suffix=suffix, extension=extension, datatype=datatype)
    relative = build_path(entities, list(DERIVATIVE_PATTERNS), strict=True)
    if relative is None:
        raise ValueError(f"{Path(source_file).name}: no derivative name for suffix {suffix!r}, "
                         f"extension {extension!r} and datatype {datatype!r}")
    return Path(output_dir) / relative


def is_parcellation(path: str | os.PathLike) -> bool:
    """Whether ``path`` is this app's parcellation label map (``desc-synthsegparc<contrast>``).

    >>> [is_parcellation(f"sub-01_desc-{d}_dseg.nii.gz") for d in ("synthsegparcT1w", "synthsegT1w")]
    [True, False]
    """
    try:
        desc = parse_entities(path).get("desc", "")
    except ValueError:
        return False
    prefix = DESC_PREFIX + PARCELLATION_VARIANT
    return desc.startswith(prefix) and len(desc) > len(prefix)


def match_key(path: str | os.PathLike, strip_suffixes: Sequence[str] = DEFAULT_STRIP_SUFFIXES) -> str:
    """Key pairing a label map with the reference of the same acquisition.

    Names starting with ``sub-``: the ``sub``/``ses``/``acq``/``run`` entities pybids finds
    in them, whatever the suffix, ``desc`` or trailing parts, so this app's
    ``sub-01_ses-1_desc-synthsegT2w_dseg``, another tool's ``sub-01_ses-1_T2w_synthseg``
    and the reference ``sub-01_ses-1_dseg`` pair. Other names (``case12_seg.nii``): the
    non-BIDS key of :func:`synthseg_bids.core.evaluation.match_key`.

    >>> match_key("sub-01_ses-a_acq-fast_run-2_T1w_synthseg.nii.gz"), match_key("case12_synthseg.nii.gz")
    ('sub-01_ses-a_acq-fast_run-2', 'case12')
    """
    from bids.layout import parse_file_entities

    name = Path(path).name
    entities = parse_file_entities("/" + name) if name.startswith("sub-") else {}
    if "subject" not in entities:
        return plain_match_key(path, strip_suffixes)
    keys = dict(ENTITY_ORDER)
    return "_".join(f"{keys[e]}-{entities[e]}" for e in MATCH_ENTITIES if e in entities)


def scan_key(path: str | os.PathLike, known_contrasts: tuple[str, ...] = ()) -> str:
    """Row key of a scored label map: its :func:`match_key` plus the contrast it came from.

    The contrast is the ``desc-synthseg<contrast>`` label of this app's derivatives, else
    the first of ``known_contrasts`` that appears as a ``_``-separated part of the name
    (another tool's ``sub-01_T2w_seg.nii.gz``), else none:
    ``sub-01_ses-1_desc-synthsegT2w_dseg.nii.gz`` -> ``sub-01_ses-1_T2w``, so the T1w and
    T2w segmentations of one session are separate rows scored against one reference.
    """
    contrast = ""
    try:
        desc = parse_entities(path).get("desc", "")
    except ValueError:
        desc = ""
    if desc.startswith(DESC_PREFIX) and len(desc) > len(DESC_PREFIX):
        contrast = desc[len(DESC_PREFIX):]
    else:
        parts = strip_image_suffix(path).split("_")
        contrast = next((c for c in known_contrasts if c in parts), "")
    key = match_key(path)
    return f"{key}_{contrast}" if contrast else key
