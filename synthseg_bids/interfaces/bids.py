"""BIDS derivative names and a small derivatives sink (niworkflows' ``DerivativesDataSink`` style).

Naming scheme
-------------
A derivative of ``<entities>_<contrast>.nii[.gz]`` (``sub-01_ses-1_acq-x_run-1_T2w.nii.gz``) is::

    <out>/sub-<s>[/ses-<t>]/anat/<entities>_desc-synthseg<contrast>_<suffix><ext>

i.e. ALL source entities are kept in their order and the source contrast goes into the
``desc`` label (``desc-synthsegT1w``, ``desc-synthsegT2w``, ``desc-synthsegFLAIR``). ``desc``
is the last entity in BIDS order and is allowed on every derivative suffix, so the
names pass the BIDS validator; the T1w and the T2w of one session never collide; and
``desc`` starting with ``synthseg`` says which tool made the file. (``mod-<contrast>``
reads better but the validator accepts ``mod`` only for ``_defacemask``; ``space-T1w``
would wrongly claim a resampling.) Suffixes written:

- ``_dseg.nii.gz`` + ``_dseg.json``: label map on the source grid, FreeSurfer values,
  looked up in the top-level ``dseg.tsv``;
- ``_probseg.nii.gz`` + ``.json`` (``--write-posteriors``): ONE 4D file, volume *i* is
  the posterior of row *i* of ``dseg.tsv`` (one file instead of 33 ``label-`` files);
- ``_volumes.tsv`` + ``_volumes.json``: one row of structure volumes (mm^3) and QC scores,
  the sidecar holds the provenance used to skip finished scans on re-runs (not a BIDS
  suffix: listed in the derivatives' ``.bidsignore``);
- ``sub-<s>/figures/<entities>_desc-synthseg<contrast>_dseg.png``: report figure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..core.io import atomic_path, atomic_write_text, image_suffix, strip_image_suffix

__all__ = [
    "DESC_PREFIX",
    "DerivativesDataSink",
    "derivative_path",
    "parse_bids_name",
    "source_contrast",
]

#: ``desc`` label prefix of every derivative (followed by the source contrast).
DESC_PREFIX = "synthseg"

_ENTITY = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")


def parse_bids_name(path: str | os.PathLike) -> tuple[list[tuple[str, str]], str]:
    """Entities (in order) and suffix of a BIDS file name.

    >>> parse_bids_name("sub-01_ses-1_acq-x_run-1_T2w.nii.gz")
    ([('sub', '01'), ('ses', '1'), ('acq', 'x'), ('run', '1')], 'T2w')
    """
    stem = strip_image_suffix(path)
    if stem.endswith(".json") or stem.endswith(".tsv"):
        stem = stem.rsplit(".", 1)[0]
    parts = stem.split("_")
    if len(parts) < 2 or not parts[0].startswith("sub-"):
        raise ValueError(f"{Path(path).name}: not a BIDS file name (sub-<label>_..._<suffix>)")
    entities = []
    for part in parts[:-1]:
        match = _ENTITY.match(part)
        if not match:
            raise ValueError(f"{Path(path).name}: bad BIDS entity {part!r}")
        entities.append((match.group(1), match.group(2)))
    suffix = parts[-1]
    if not suffix.isalnum():
        raise ValueError(f"{Path(path).name}: bad BIDS suffix {suffix!r}")
    return entities, suffix


def source_contrast(path: str | os.PathLike) -> str:
    """The suffix of a source scan (``T1w``, ``T2w``, ``FLAIR``...)."""
    return parse_bids_name(path)[1]


def derivative_path(
    source_file: str | os.PathLike,
    output_dir: str | os.PathLike,
    suffix: str,
    extension: str,
    *,
    datatype: str = "anat",
) -> Path:
    """Derivative file name of a source scan (see the module docstring).

    >>> derivative_path("/d/sub-01/ses-1/anat/sub-01_ses-1_run-1_T2w.nii.gz", "/o", "dseg", ".nii.gz").as_posix()
    '/o/sub-01/ses-1/anat/sub-01_ses-1_run-1_desc-synthsegT2w_dseg.nii.gz'
    >>> derivative_path("/d/sub-01/anat/sub-01_T1w.nii", "/o", "dseg", ".png", datatype="figures").as_posix()
    '/o/sub-01/figures/sub-01_desc-synthsegT1w_dseg.png'
    """
    entities, contrast = parse_bids_name(source_file)
    entities = [(k, v) for k, v in entities if k != "desc"]
    found = dict(entities)
    folder = Path(output_dir) / f"sub-{found['sub']}"
    if datatype != "figures" and "ses" in found:
        folder = folder / f"ses-{found['ses']}"
    folder = folder / datatype
    stem = "_".join(f"{k}-{v}" for k, v in entities)
    return folder / f"{stem}_desc-{DESC_PREFIX}{contrast}_{suffix}{extension}"


class _DerivativesDataSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = traits.Directory(mandatory=True, desc="derivatives folder (the BIDS-App's output_dir)")
    source_file = File(exists=False, mandatory=True, desc="BIDS source scan the derivative was computed from")
    in_file = File(exists=True, mandatory=True, desc="file to store under its BIDS derivative name")
    suffix = traits.Str(mandatory=True, desc="BIDS suffix of the derivative (dseg, probseg, volumes)")
    datatype = traits.Str("anat", usedefault=True, desc="folder under the subject (anat, figures)")
    meta_dict = traits.Dict(traits.Str, desc="JSON sidecar content (written when given)")
    meta_file = File(exists=True, desc="JSON file merged into the sidecar (before meta_dict)")
    depends_on = traits.List(traits.Any, desc="outputs that must exist before this one is written (ordering only)")


class _DerivativesDataSinkOutputSpec(TraitedSpec):
    out_file = File(desc="the derivative written")
    out_meta = File(desc="its JSON sidecar (when metadata was given)")


class DerivativesDataSink(SimpleInterface):
    """Copy a file to its BIDS derivative name (atomically), with an optional JSON sidecar.

    The extension is taken from ``in_file`` (``.nii.gz``, ``.tsv``, ``.png``...). The
    sidecar is written last, after the data file: a sidecar therefore always describes
    a complete data file (the re-run check relies on this).
    """

    input_spec = _DerivativesDataSinkInputSpec
    output_spec = _DerivativesDataSinkOutputSpec

    def _run_interface(self, runtime):
        in_file = Path(self.inputs.in_file)
        extension = image_suffix(in_file) or "".join(in_file.suffixes[-1:])
        out_file = derivative_path(
            self.inputs.source_file,
            self.inputs.base_directory,
            self.inputs.suffix,
            extension,
            datatype=self.inputs.datatype,
        )
        with atomic_path(out_file) as tmp:
            shutil.copyfile(in_file, tmp)
        self._results["out_file"] = str(out_file)
        meta = {}
        if isdefined(self.inputs.meta_file):
            meta.update(json.loads(Path(self.inputs.meta_file).read_text()))
        if isdefined(self.inputs.meta_dict):
            meta.update(self.inputs.meta_dict)
        if meta:
            sidecar = out_file.parent / (strip_image_suffix(out_file).rsplit(".", 1)[0] + ".json")
            atomic_write_text(sidecar, json.dumps(meta, indent=2, sort_keys=False, default=str) + "\n")
            self._results["out_meta"] = str(sidecar)
        return runtime
