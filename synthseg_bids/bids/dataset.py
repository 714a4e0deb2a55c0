"""The input dataset: validation and the selection of the scans to segment (pybids)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .names import parse_entities

__all__ = ["BIDSError", "EXCLUDED_SUFFIXES", "collect_scans", "find_validator", "symlink_loops", "validate_dataset"]

LOGGER = logging.getLogger("synthseg_bids.bids")

#: anat suffixes that are derivatives or masks, never segmented.
EXCLUDED_SUFFIXES = {"dseg", "probseg", "mask", "defacemask", "roi", "label"}
#: The official validator's executables, first found wins (the first is a PyPI package, a run-time dependency).
VALIDATOR_NAMES = ("bids-validator-deno", "bids-validator")


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
    refines it. pybids keeps its index in memory (no database file), so nothing is
    written into ``bids_dir``; its ``derivatives/`` folder is not indexed.
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
        try:
            named = parse_entities(f.path)  # with ``desc``, which pybids' raw index does not know
        except ValueError as err:
            LOGGER.warning("%s; ignored", err)
            continue
        if named["suffix"] in EXCLUDED_SUFFIXES or "desc" in named:
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


def find_validator() -> str | None:
    """The official BIDS validator's executable: next to the running Python, else on ``PATH``.

    ``bids-validator-deno`` is installed with the package (a run-time dependency), into
    the environment's ``bin`` folder, which is not on ``PATH`` when a virtual
    environment's Python is run without activating it.
    """
    here = Path(sys.executable).parent
    for name in VALIDATOR_NAMES:
        candidate = here / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    for name in VALIDATOR_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def validate_dataset(bids_dir: str | Path) -> list[str]:
    """Run the official BIDS validator on ``bids_dir``; returns its error lines (warnings ignored).

    Raises
    ------
    BIDSError
        No validator is installed (``pip install bids-validator-deno``; or skip the
        check with ``--skip-bids-validation``).
    """
    exe = find_validator()
    if exe is None:
        raise BIDSError("the BIDS validator (bids-validator-deno) is not installed next to "
                        f"{sys.executable} nor on PATH: pip install bids-validator-deno, "
                        "or use --skip-bids-validation")
    proc = subprocess.run([exe, str(bids_dir), "--format", "json"], capture_output=True, text=True, check=False)
    try:
        issues = json.loads(proc.stdout)["issues"]["issues"]
    except (ValueError, KeyError, TypeError):
        return [] if proc.returncode == 0 else [f"BIDS validator failed: {proc.stderr.strip()[:300]}"]
    return sorted({f"{i['code']} {i.get('location', '')}".strip() for i in issues if i.get("severity") == "error"})
