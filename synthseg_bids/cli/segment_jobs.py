"""The scans of ``synthseg-bids segment --i`` and where each scan's outputs go.

``IN`` and ``OUT`` take one of three forms (the same form for ``--post`` and ``--resample``):
a scan and an output file (or a folder receiving ``<name>_synthseg<ext>``), a folder and an
output folder, or two ``.txt`` lists of one path per line (see :mod:`synthseg_bids.cli.segment`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..core.io import IMAGE_SUFFIXES, image_suffix, strip_image_suffix

__all__ = ["InputError", "Job", "UsageError", "resolve_jobs"]

#: Output name suffix of each per-scan output in folder form.
_SUFFIXES = {"seg": "_synthseg", "post": "_posteriors", "resample": "_resampled"}


class UsageError(ValueError):
    """Inconsistent command-line paths (exit status 2)."""


class InputError(ValueError):
    """A missing or unreadable input path (exit status 1)."""


@dataclass(frozen=True)
class Job:
    """One scan and where its outputs go (``None``: not requested).

    ``key`` names the scan in the ``--vol``/``--qc`` tables (the file name without its
    image suffix, or the path without suffix when two inputs share a name).
    """

    scan: Path
    seg: Path
    post: Path | None = None
    resample: Path | None = None
    key: str = ""

    def outputs(self) -> list[Path]:
        return [p for p in (self.seg, self.post, self.resample) if p is not None]


def _read_list(path: Path, option: str) -> list[Path]:
    """Paths listed in a .txt file (blank lines and ``#`` comments ignored)."""
    if not path.is_file():
        raise InputError(f"{path}: list file not found ({option})")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot be read ({err})") from None
    entries = [line.strip() for line in lines]
    return [Path(e) for e in entries if e and not e.startswith("#")]


def _form(path: str) -> str:
    """'list', 'file' or 'folder' from the name alone."""
    if path.lower().endswith(".txt"):
        return "list"
    return "file" if image_suffix(path) else "folder"


def _named(folder: Path, scan: Path, kind: str) -> Path:
    suffix = image_suffix(scan)
    return folder / f"{strip_image_suffix(scan)}{_SUFFIXES[kind]}{suffix}"


def _outputs_for(
    kind: str, option: str, value: str | None, in_form: str, scans: list[Path]
) -> list[Path | None]:
    """Paths of one per-scan output (``--o``, ``--post`` or ``--resample``) for every scan."""
    if value is None:
        return [None] * len(scans)
    form = _form(value)
    if in_form == "list":
        if form != "list":
            raise UsageError(f"{option} {value}: the input is a .txt list, so {option} must be a .txt list too")
        paths = _read_list(Path(value), option)
        if len(paths) != len(scans):
            raise UsageError(
                f"{option} {value} lists {len(paths)} path(s) but --i lists {len(scans)} scan(s); "
                "give one output per input, in the same order"
            )
        for p in paths:
            if not image_suffix(p):
                raise UsageError(f"{value}: {p} does not end in one of {', '.join(IMAGE_SUFFIXES)}")
        return list(paths)
    if form == "list":
        raise UsageError(f"{option} {value}: a .txt list output needs a .txt list input (--i)")
    if in_form == "folder":
        if form == "file":
            raise UsageError(f"{option} {value}: the input is a folder, so {option} must be a folder, not a file")
        if Path(value).is_file():
            raise UsageError(f"{option} {value}: exists and is a file; the input is a folder, give a folder")
        return [_named(Path(value), s, kind) for s in scans]
    # a single scan: a file, or a folder receiving <name>_<suffix><ext>
    if form == "folder":
        if Path(value).is_file():
            raise UsageError(f"{option} {value}: exists and is not an image file or a folder")
        return [_named(Path(value), scans[0], kind)]
    return [Path(value)]


def _scan_keys(scans: list[Path]) -> list[str]:
    """Table row names: the file name without suffix; with the folder when names repeat."""
    names = [strip_image_suffix(s) for s in scans]
    repeated = {n for n in names if names.count(n) > 1}
    return [str(s.parent / n) if n in repeated else n for s, n in zip(scans, names)]


def resolve_jobs(args: argparse.Namespace) -> list[Job]:
    """The scans of ``--i`` and their output paths.

    Raises
    ------
    UsageError
        Mixed forms, lists of different lengths, clashing outputs.
    InputError
        Missing input, unrecognised input file, folder without scans, empty list.
    """
    if args.vol is not None and args.qc is not None and Path(args.vol).resolve() == Path(args.qc).resolve():
        raise UsageError(f"--vol and --qc name the same file ({args.vol}); give two files")
    value = args.input
    in_form = _form(value)
    path = Path(value)
    if in_form == "list":
        scans = _read_list(path, "--i")
        if not scans:
            raise InputError(f"{path}: the list has no scans")
    elif in_form == "file":
        if not path.exists():
            raise InputError(f"{path}: file not found")
        if path.is_dir():
            raise InputError(f"{path}: is a folder with an image suffix; rename it or give a scan")
        scans = [path]
    else:
        if not path.exists():
            raise InputError(f"{path}: not found (give a .nii/.nii.gz/.mgz scan, a folder or a .txt list)")
        if not path.is_dir():
            raise InputError(
                f"{path}: not a scan (expected one of {', '.join(IMAGE_SUFFIXES)}), a folder or a .txt list"
            )
        scans = sorted(p for p in path.iterdir() if image_suffix(p) and not p.name.startswith(".") and p.is_file())

    def plan(scans: list[Path]) -> tuple[list, list, list]:
        return (
            _outputs_for("seg", "--o", args.output, in_form, scans),
            _outputs_for("post", "--post", args.post, in_form, scans),
            _outputs_for("resample", "--resample", args.resample, in_form, scans),
        )

    segs, posts, resamples = plan(scans)
    if in_form == "folder":
        # outputs written into the input folder are not inputs of a later run
        produced = {p.resolve() for outs in (segs, posts, resamples) for p in outs if p is not None}
        kept = [s for s in scans if s.resolve() not in produced]
        if len(kept) != len(scans):
            scans = kept
            segs, posts, resamples = plan(scans)
        if not scans:
            raise InputError(f"{path}: no scans ({', '.join(IMAGE_SUFFIXES)}) in this folder")

    keys = _scan_keys(scans)
    jobs = [Job(s, o, p, r, k) for s, o, p, r, k in zip(scans, segs, posts, resamples, keys)]
    owner: dict[Path, Path] = {}
    inputs = {s.resolve() for s in scans}
    for job in jobs:
        for out in job.outputs():
            resolved = out.resolve()
            if resolved in inputs:
                raise UsageError(f"{out}: an output would overwrite an input scan")
            if resolved in owner and owner[resolved] != job.scan:
                raise UsageError(f"{out}: output of both {owner[resolved]} and {job.scan}")
            owner[resolved] = job.scan
    return jobs
