"""BIDS input selection and the derivatives dataset's top-level files."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from .. import __version__
from ..core.io import atomic_write_text
from ..core.labels import default_label_table
from ..interfaces.bids import derivative_path

__all__ = [
    "BIDSError",
    "BIDS_VERSION",
    "collect_scans",
    "scan_is_done",
    "validate_dataset",
    "write_derivatives_description",
]

LOGGER = logging.getLogger("synthseg_bids.cli")

#: BIDS version the derivatives declare.
BIDS_VERSION = "1.10.0"
#: anat suffixes that are derivatives or masks, never segmented.
EXCLUDED_SUFFIXES = {"dseg", "probseg", "mask", "defacemask", "roi", "label"}
#: Files in the derivatives folder that are not BIDS (ignored by the validator).
BIDSIGNORE = ["logs/", "group/", "*.html", "sub-*/figures", "*_volumes.tsv", "*_volumes.json"]


class BIDSError(ValueError):
    """The input dataset or the query cannot be used; the message is one line."""


def _query_value(value):
    from bids.layout import Query

    if value is None or value == "null":
        return Query.NONE
    if value == "*":
        return Query.ANY
    return value


def collect_scans(
    bids_dir: str | Path,
    *,
    participant_label=(),
    session_label=(),
    bids_filters: str | dict = "",
    validate: bool = True,
) -> dict[str, list[str]]:
    """Anatomical scans to segment, per subject (label without ``sub-``).

    Default selection: every NIfTI in an ``anat`` folder of the raw dataset (any
    contrast: T1w, T2w, FLAIR, PDw...), except segmentations and masks. The ``anat``
    query of ``bids_filters`` (pybids entity names; ``null``/``"*"`` for none/any)
    refines it.
    """
    from bids import BIDSLayout

    filters = json.loads(bids_filters) if isinstance(bids_filters, str) and bids_filters else dict(bids_filters or {})
    unknown = sorted(set(filters) - {"anat"})
    if unknown:
        raise BIDSError(f"--bids-filter-file: unknown query name(s) {', '.join(unknown)}; the only query is 'anat'")
    loops = symlink_loops(bids_dir)
    extra = {}
    if loops:
        from bids.layout import BIDSLayoutIndexer
        from bids.layout.validation import DEFAULT_LOCATIONS_TO_IGNORE

        LOGGER.warning("%s: ignoring symbolic link(s) that loop back into the dataset: %s", bids_dir,
                       ", ".join(loops))
        ignore = [*DEFAULT_LOCATIONS_TO_IGNORE, *(re.compile(f"^/{re.escape(p)}(/|$)") for p in loops)]
        extra["indexer"] = BIDSLayoutIndexer(validate=validate, ignore=ignore)
    try:
        layout = BIDSLayout(str(bids_dir), validate=validate, derivatives=False, **extra)
    except Exception as err:  # pybids raises several types for unusable datasets
        raise BIDSError(f"{bids_dir}: cannot be indexed as a BIDS dataset ({str(err).splitlines()[0]})") from None
    query = {"datatype": "anat", "extension": [".nii", ".nii.gz"]}
    if participant_label:
        query["subject"] = list(participant_label)
    if session_label:
        query["session"] = list(session_label)
    for key, value in filters.get("anat", {}).items():
        query[key] = [_query_value(v) for v in value] if isinstance(value, list) else _query_value(value)
    try:
        files = layout.get(return_type="object", **query)
    except Exception as err:
        raise BIDSError(f"--bids-filter-file: bad query ({str(err).splitlines()[0]})") from None
    scans: dict[str, list[str]] = {s: [] for s in (participant_label or layout.get_subjects())}
    for f in files:
        entities = f.get_entities()
        if entities.get("suffix") in EXCLUDED_SUFFIXES or "desc" in entities:
            continue
        if not _canonical_location(f.path, layout.root, entities):
            LOGGER.warning("%s: not at its BIDS location (sub-<label>[/ses-<label>]/anat/); ignored", f.path)
            continue
        scans.setdefault(entities["subject"], []).append(f.path)
    return {s: sorted(paths) for s, paths in sorted(scans.items())}


def symlink_loops(bids_dir: str | Path) -> list[str]:
    """Symbolic links to folders of ``bids_dir`` that point at one of their own ancestors.

    Returned as POSIX paths relative to ``bids_dir`` (e.g. ``sub-03/anat`` for
    ``sub-03/anat -> ..``); pybids would otherwise follow such a loop down to the
    operating system's symlink depth limit, indexing the dataset once per level.
    """
    root = Path(bids_dir)
    loops = []
    for folder, dirnames, _ in os.walk(root):  # does not follow links
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in list(dirnames):
            link = Path(folder) / name
            if not link.is_symlink():
                continue
            dirnames.remove(name)
            try:
                target = link.resolve(strict=True)
            except (OSError, RuntimeError):  # dangling or self-referencing link
                loops.append(link.relative_to(root).as_posix())
                continue
            here = link.parent.resolve()
            if target == here or target in here.parents:
                loops.append(link.relative_to(root).as_posix())
    return sorted(loops)


def _canonical_location(path: str, bids_dir: str | Path, entities: dict) -> bool:
    """Whether a scan is at ``sub-<s>[/ses-<t>]/anat/<name>`` with matching entities."""
    try:
        parts = Path(path).relative_to(Path(bids_dir)).parts
    except ValueError:
        return False
    subject, session = entities.get("subject"), entities.get("session")
    expected = (f"sub-{subject}",) + ((f"ses-{session}",) if session else ()) + ("anat",)
    name = parts[-1]
    prefix = f"sub-{subject}_" + (f"ses-{session}_" if session else "")
    return parts[:-1] == expected and name.startswith(prefix)


def validate_dataset(bids_dir: str | Path) -> list[str]:
    """Run the official BIDS validator when installed; returns its error lines.

    Looks for ``bids-validator-deno`` then ``bids-validator`` on the PATH; when neither
    is there, returns ``[]`` after a warning (pybids' own checks still apply).
    """
    exe = shutil.which("bids-validator-deno") or shutil.which("bids-validator")
    if exe is None:
        LOGGER.warning("BIDS validator not found on PATH (pip install bids-validator-deno); skipping validation")
        return []
    proc = subprocess.run([exe, str(bids_dir), "--format", "json"], capture_output=True, text=True, check=False)
    try:
        issues = json.loads(proc.stdout)["issues"]["issues"]
    except (ValueError, KeyError, TypeError):
        return [] if proc.returncode == 0 else [f"BIDS validator failed: {proc.stderr.strip()[:300]}"]
    return sorted({f"{i['code']} {i.get('location', '')}".strip() for i in issues if i.get("severity") == "error"})


def write_derivatives_description(output_dir: Path, bids_dir: Path, container: tuple[str, str], label_table=None) -> None:
    """``dataset_description.json``, ``dseg.tsv``, ``.bidsignore`` and ``README`` of the derivatives."""
    generated = {"Name": "synthseg-bids", "Version": __version__,
                 "CodeURL": "https://github.com/synthseg-bids/synthseg-bids"}
    if container[0]:
        generated["Container"] = {"Type": container[0], **({"Tag": container[1]} if container[1] else {})}
    description = {
        "Name": "synthseg-bids segmentations",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": Path(bids_dir).resolve().as_uri()}],
        "DatasetLinks": {"raw": Path(bids_dir).resolve().as_uri()},
    }
    raw_description = Path(bids_dir) / "dataset_description.json"
    try:
        raw = json.loads(raw_description.read_text())
        if raw.get("DatasetDOI"):
            description["SourceDatasets"][0]["DOI"] = raw["DatasetDOI"]
    except (OSError, ValueError):
        pass
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / "dataset_description.json", json.dumps(description, indent=2) + "\n")
    (label_table or default_label_table()).write_dseg_tsv(output_dir / "dseg.tsv")
    atomic_write_text(output_dir / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
    readme = output_dir / "README.md"
    if not readme.exists():
        atomic_write_text(
            readme,
            "# synthseg-bids derivatives\n\nSegmentations of the anatomical scans of the source dataset, "
            "written by synthseg-bids. Label values: dseg.tsv. Per-subject reports: sub-<label>.html.\n",
        )


def scan_is_done(scan: str | Path, output_dir: Path, model_sha256: str, write_posteriors: bool) -> bool:
    """Whether an earlier run finished this scan with the same input and model.

    True when the ``_volumes.json`` sidecar (written last) exists, records the same
    model sha256 and the same input file (size and mtime, or else sha256), and the
    label map, figure and (when asked for) the posteriors are present.
    """
    sidecar = derivative_path(scan, output_dir, "volumes", ".json")
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    wanted = [derivative_path(scan, output_dir, "dseg", ".nii.gz"),
              derivative_path(scan, output_dir, "volumes", ".tsv"),
              derivative_path(scan, output_dir, "dseg", ".png", datatype="figures")]
    if write_posteriors:
        wanted.append(derivative_path(scan, output_dir, "probseg", ".nii.gz"))
    if not all(p.exists() for p in wanted) or meta.get("ModelSHA256") != model_sha256:
        return False
    source = meta.get("SourceFile", {})
    stat = Path(scan).stat()
    if source.get("size") == stat.st_size and source.get("mtime_ns") == stat.st_mtime_ns:
        return True
    if source.get("size") != stat.st_size:
        return False
    from ..interfaces.segmentation import file_sha256

    return source.get("sha256") == file_sha256(scan)
