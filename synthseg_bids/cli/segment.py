"""``synthseg-bids segment``: SynthSeg's command line for single scans, folders and lists.

::

    synthseg-bids segment --i IN --o OUT [--vol CSV] [--qc CSV] [--post P] [--resample R]
                          [--crop N [N N]] [--fast] [--ct] [--model FILE]
                          [--model-dir DIR [--v1 | --robust] [--parc]]
                          [--threads N] [--cpu | --device {auto,cpu,gpu}] [--overwrite]

``IN`` and ``OUT`` take one of three forms (the same form for ``--post`` and
``--resample``):

- a scan (.nii, .nii.gz, .mgz) and an output file; ``OUT`` (or ``--post``/``--resample``)
  without an image suffix is a folder that receives ``<name>_synthseg<ext>``
  (``_posteriors``, ``_resampled``), as in SynthSeg;
- a folder and an output folder: every scan directly inside ``IN`` (not recursive,
  hidden files ignored) gives ``OUT/<name>_synthseg<ext>`` with the input's extension;
- two ``.txt`` files listing one path per line, in the same order (blank lines and
  lines starting with ``#`` are ignored; relative paths are relative to the current
  folder, as in SynthSeg).

The model is loaded once for all scans. A line per scan on stderr shows the progress,
``[3/10] sub-03_T1w.nii.gz 12.4 s (eta 1 m 27 s)``. A scan whose requested outputs all
exist already (and, with ``--vol``/``--qc``, whose row is in the table) is skipped
unless ``--overwrite``; without ``--overwrite`` an existing output file is never
replaced. A scan that fails prints ``error: <path>: <problem>`` and the others go on.
Every file is written under a temporary name and renamed into place, so a failure
leaves no partial file; ``--vol`` and ``--qc`` tables are rewritten (atomically) after
each scan, with the rows of earlier runs kept and those of re-segmented scans replaced.

Exit status: 0 every scan segmented or skipped; 1 some scan failed, or an input, model
or device problem stopped the command before it started; 2 a usage error (bad or
inconsistent options, mixed input/output forms, lists of different lengths, ``--v1``,
``--robust`` or ``--parc`` without ``--model-dir``, or ``--photo``, whose network this
project cannot run).

SynthSeg's published networks: ``--model FILE.h5`` runs a Keras 2 ``.h5`` segmentation
network (1.0, 2.0 or robust); ``--model-dir DIR`` (a folder like ``$FREESURFER_HOME/models``)
picks files as ``mri_synthseg`` does: ``synthseg_2.0.h5``, or ``synthseg_1.0.h5`` with
``--v1``, ``synthseg_robust_2.0.h5`` with ``--robust`` (which implies ``--fast``; not with
``--v1``), plus ``synthseg_parc_2.0.h5`` with ``--parc`` (the cortex of ``--o`` is then
labelled with Desikan-Killiany parcels and ``--vol`` gets their volumes) and
``synthseg_qc_2.0.h5`` with ``--qc`` (the QC network's 8 group scores instead of the
posterior-based ones). See :mod:`synthseg_bids.inference.official`.

TensorFlow is imported only once the arguments and paths have been checked.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..core.io import IMAGE_SUFFIXES, ImageError, atomic_path, image_suffix, strip_image_suffix, write_table
from ..core.progress import Progress, format_duration
from .arguments import add_accuracy_options, add_official_model_options, model_choice_problem, positive_int

__all__ = ["PROG", "UNSUPPORTED", "Job", "UsageError", "build_parser", "main", "resolve_jobs", "settings_from_args"]

PROG = "synthseg-bids segment"

#: SynthSeg options that need models this project does not provide -> explanation.
UNSUPPORTED: dict[str, str] = {
    "photo": "--photo (Photo-SynthSeg, for stacks of dissection photographs) needs a network that "
    "synthseg-bids does not have",
}

#: Output name suffix of each per-scan output in folder form.
_SUFFIXES = {"seg": "_synthseg", "post": "_posteriors", "resample": "_resampled"}
_VOLUME_TABLE = "volumes"
_QC_TABLE = "qc"


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


# -- parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``synthseg-bids segment`` (imports nothing heavy)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Segment brain MRI scans of any contrast and resolution (SynthSeg's command line): a scan, "
        "every scan of a folder, or the scans listed in a .txt file. The model is loaded once for all scans.",
        epilog="IN/OUT forms: scan -> file (or a folder receiving <name>_synthseg<ext>); folder -> folder "
        "(<name>_synthseg<ext> for every .nii/.nii.gz/.mgz directly inside IN); list.txt -> list.txt (one path "
        "per line, same count; blank lines and '#' comments ignored). --post and --resample take the same form "
        "as --o. Exit status: 0 all scans segmented or skipped, 1 some scan failed or the inputs/model/device "
        "cannot be used, 2 usage error (including the unavailable options above).",
    )
    parser.add_argument("--version", action="version", version=f"synthseg-bids {__version__}")

    io_group = parser.add_argument_group("Inputs and outputs")
    io_group.add_argument("--i", dest="input", required=True, metavar="IN",
                          help="scan to segment (.nii, .nii.gz, .mgz), folder of scans, or .txt list of scans")
    io_group.add_argument("--o", dest="output", required=True, metavar="OUT",
                          help="segmentation(s): a file for a scan, a folder for a folder, a .txt list for a list; "
                          "label maps with FreeSurfer label values on the input's grid")
    io_group.add_argument("--vol", metavar="CSV",
                          help="CSV of volumes (mm^3): one row per scan ('scan' column), one column per structure "
                          "and 'total intracranial'; rows of scans segmented earlier are kept, re-segmented ones "
                          "updated")
    io_group.add_argument("--qc", metavar="CSV",
                          help="CSV of automatic quality-control scores, one row per scan: per structure group "
                          "the mean confidence and (without --fast) the left/right flip Dice, and a 'flag' column")
    io_group.add_argument("--post", metavar="PATH",
                          help="posteriors (4D float32, one volume per label, on the input's grid): same form as "
                          "--o (folder outputs are named <name>_posteriors<ext>)")
    io_group.add_argument("--resample", metavar="PATH",
                          help="the input as the network saw it: resampled to the model's resolution (1 mm), "
                          "RAS-oriented, intensities normalised to [0, 1]; same form as --o (<name>_resampled<ext>)")
    io_group.add_argument("--overwrite", action="store_true",
                          help="segment again scans whose outputs exist and replace those outputs "
                          "(default: such scans are skipped and existing files never replaced)")

    pred = parser.add_argument_group("Prediction")
    pred.add_argument("--model", metavar="FILE",
                      help="model file: a .npz written by synthseg-bids, or one of SynthSeg's published Keras .h5 "
                      "segmentation networks (1.0, 2.0, robust); default: the model shipped with the package")
    pred.add_argument("--fast", action="store_true",
                      help="faster: no left/right flip test-time augmentation (half the network time) and "
                      "lighter post-processing (largest connected component of the brain only)")
    pred.add_argument("--ct", action="store_true",
                      help="CT scans: clip intensities to [0, 80] (Hounsfield units) before anything else")
    pred.add_argument("--crop", nargs="+", type=positive_int, metavar="N",
                      help="analyse a centred box of N (or N1 N2 N3) voxels at 1 mm around the head instead of the "
                      "whole head (less memory and time for large fields of view); rounded up to the network's "
                      "size multiple; voxels outside are background; outputs stay on the input's grid")

    perf = parser.add_argument_group("Performance")
    perf.add_argument("--threads", type=positive_int, metavar="N",
                      help="CPU threads of TensorFlow (default: TensorFlow's choice, all cores)")
    perf.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                      help="where the network runs: 'auto' (a GPU if TensorFlow sees one, else the CPU), 'cpu', "
                      "or 'gpu' (an error without a GPU); default: auto")
    perf.add_argument("--cpu", dest="device", action="store_const", const="cpu",
                      help="run on the CPU even when a GPU is available (same as --device cpu)")
    add_accuracy_options(perf)

    official = parser.add_argument_group(
        "SynthSeg's published networks",
        "With --model-dir DIR (a folder laid out like $FREESURFER_HOME/models), files are chosen as mri_synthseg "
        "does: synthseg_2.0.h5 by default; --qc CSV then uses synthseg_qc_2.0.h5 (8 group scores in [0, 1]).",
    )
    add_official_model_options(official, parc_output="--o, their volumes in --vol")

    missing = parser.add_argument_group(
        "Options of SynthSeg that are not available",
        "They need networks that synthseg-bids cannot run; each stops the command with a message (exit 2).",
    )
    missing.add_argument("--photo", nargs="?", const="both", metavar="HEMI",
                         help="Photo-SynthSeg for dissection photographs (not available)")
    return parser


def settings_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~synthseg_bids.inference.InferenceSettings` of the parsed options.

    ``--crop`` sets both the analysed size and the smallest network input (otherwise the
    128-voxel minimum input size would make a smaller crop pointless). ``--robust``
    implies ``--fast`` (the robust network's own settings are applied when it is loaded).
    """
    from ..inference.settings import InferenceSettings

    changes: dict[str, Any] = {"device": args.device, "threads": args.threads}
    changes.update({name: getattr(args, name) for name in ("precision", "shifts") if getattr(args, name) is not None})
    if args.ct:
        changes["intensity_clip"] = (0.0, 80.0)
    if args.crop is not None:
        crop = tuple(args.crop) * 3 if len(args.crop) == 1 else tuple(args.crop)
        changes["crop"] = crop
    fast = args.fast or getattr(args, "robust", False)
    return InferenceSettings.fast(**changes) if fast else InferenceSettings(**changes)


# -- paths ---------------------------------------------------------------------------


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


# -- tables --------------------------------------------------------------------------


class Table:
    """A CSV with a ``scan`` column and one row per scan, merged with the existing file."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] = ["scan"]
        self.rows: dict[str, dict[str, str]] = {}
        if path.exists():
            try:
                with open(path, newline="") as stream:
                    reader = csv.DictReader(stream)
                    header = list(reader.fieldnames or [])
                    rows = list(reader)
            except (OSError, UnicodeDecodeError, csv.Error) as err:
                raise InputError(f"{path}: cannot be read as a CSV table ({err})") from None
            if not header or header[0] != "scan":
                raise InputError(
                    f"{path}: exists but is not a table written by this command (its first column is not "
                    "'scan'); remove it or choose another file"
                )
            self.columns = header
            for row in rows:
                self.rows[row["scan"]] = {k: v for k, v in row.items() if k is not None}

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def update(self, key: str, values: dict[str, str]) -> None:
        """Replace (or add) the row of ``key`` and rewrite the file atomically."""
        for column in values:
            if column not in self.columns:
                self.columns.append(column)
        self.rows[key] = {"scan": key, **values}
        import pandas as pd

        write_table(self.path, pd.DataFrame(list(self.rows.values()), columns=self.columns), sep=",", na_rep="")


def _volume_row(result: Any) -> dict[str, str]:
    from ..inference.official import OfficialResult

    row = {name: repr(float(v)) for name, v in result.volumes.items()}
    if isinstance(result, OfficialResult):
        row.update({name: repr(float(v)) for name, v in result.parcel_volumes.items()})
    return row


def _qc_row(result: Any) -> dict[str, str]:
    from ..inference.official import OfficialResult

    if isinstance(result, OfficialResult) and result.network_qc is not None:
        return {name: f"{v:.4f}" for name, v in result.network_qc.items()}
    row = {name: repr(float(v)) for name, v in result.qc.scores.items()}
    row["flag"] = str(bool(result.qc.flag))
    return row


# -- progress ------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- running -------------------------------------------------------------------------


def _needs_work(job: Job, tables: list[Table], overwrite: bool) -> bool:
    if overwrite:
        return True
    return not all(p.exists() for p in job.outputs()) or any(job.key not in t for t in tables)


def _segment_one(segmenter: Any, job: Job, overwrite: bool) -> Any:
    """Segment ``job.scan`` and write its missing (or, with ``overwrite``, all) outputs."""
    from ..core.io import load_image, save_image
    from ..inference import prepare_scan, write_result

    def wanted(path: Path | None) -> Path | None:
        return path if path is not None and (overwrite or not path.exists()) else None

    from ..inference.official import OfficialResult

    post, resample = wanted(job.post), wanted(job.resample)
    result = segmenter.segment(job.scan, posteriors=post is not None)
    # with a parcellation network, --o gets the cortex parcels (as mri_synthseg --parc)
    written = result
    if isinstance(result, OfficialResult) and result.parcellation is not None:
        written = dataclasses.replace(result, labels=result.parcellation)
    with contextlib.ExitStack() as stack:
        if resample is not None:
            network = segmenter.network
            prepared = prepare_scan(load_image(job.scan), network.resolution_mm, network.size_multiple,
                                    segmenter.settings)
            tmp = stack.enter_context(atomic_path(resample))
            save_image(prepared.conformed, prepared.conformed_affine, tmp)
        write_result(written, labels=wanted(job.seg), posteriors=post)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for option, message in UNSUPPORTED.items():
        if getattr(args, option):
            parser.error(message)
    if args.crop is not None and len(args.crop) not in (1, 3):
        parser.error(f"argument --crop: give 1 or 3 sizes, got {len(args.crop)}")
    problem = model_choice_problem(args)
    if problem is not None:
        parser.error(problem)

    from ..core.settings import SettingsError

    try:
        settings = settings_from_args(args)
    except SettingsError as err:
        parser.error(str(err))
    try:
        jobs = resolve_jobs(args)
    except UsageError as err:
        parser.error(str(err))
    except InputError as err:
        _say(f"{PROG}: error: {err}")
        return 1

    model_files = None
    if args.model_dir is not None:
        from ..inference.official import select_model_files
        from ..network import ModelFileError

        try:
            model_files = select_model_files(args.model_dir, v1=args.v1, robust=args.robust, parcellation=args.parc,
                                             qc=args.qc is not None)
        except ModelFileError as err:
            _say(f"{PROG}: error: {err}")
            return 1
        model = model_files.segmentation
    elif args.model is not None:
        model = Path(args.model)
        if not model.is_file():
            _say(f"{PROG}: error: {model}: model file not found")
            return 1
    else:
        from ..inference.segmenter import default_model_path

        model = default_model_path()
        if not model.is_file():
            _say(f"{PROG}: error: no model given and the default model is not installed ({model}); "
                 "pass a model file with --model FILE")
            return 1

    try:
        tables = {name: Table(Path(path)) for name, path in ((_VOLUME_TABLE, args.vol), (_QC_TABLE, args.qc))
                  if path is not None}
    except InputError as err:
        _say(f"{PROG}: error: {err}")
        return 1

    todo = [job for job in jobs if _needs_work(job, list(tables.values()), args.overwrite)]
    n = len(jobs)
    if not todo:
        _say(f"{PROG}: all {n} scan(s) have their outputs already (use --overwrite to segment them again)")
        return 0

    from ..inference.device import DeviceError
    from ..network import ModelFileError

    started = time.perf_counter()
    from ..inference.official import OfficialSegmenter, load_segmenter

    try:
        if model_files is not None:
            segmenter = OfficialSegmenter(model_files.segmentation, parcellation=model_files.parcellation,
                                          qc=model_files.qc, settings=settings)
        else:
            segmenter = load_segmenter(model, settings=settings)
    except (ModelFileError, DeviceError, ImageError) as err:
        _say(f"{PROG}: error: {err}")
        return 1
    kind = ""
    if isinstance(segmenter, OfficialSegmenter):
        kind = " (" + ", ".join(p["description"] for p in segmenter.provenance()) + ")"
    _say(f"{PROG}: {n} scan(s) ({n - len(todo)} with outputs already), model {segmenter.model_path}{kind} on "
         f"{segmenter.network.device} (loaded in {format_duration(time.perf_counter() - started)})")

    done = failed = skipped = 0
    progress = Progress(total=len(todo))
    for i, job in enumerate(jobs, start=1):
        label = f"[{i}/{n}] {job.scan.name}"
        if not _needs_work(job, list(tables.values()), args.overwrite):
            skipped += 1
            _say(f"{label} skipped (outputs exist; --overwrite to redo)")
            continue
        tic = time.perf_counter()
        try:
            result = _segment_one(segmenter, job, args.overwrite)
            if _VOLUME_TABLE in tables:
                tables[_VOLUME_TABLE].update(job.key, _volume_row(result))
            if _QC_TABLE in tables:
                tables[_QC_TABLE].update(job.key, _qc_row(result))
        except KeyboardInterrupt:
            raise
        except Exception as err:  # one bad scan must not stop the others
            failed += 1
            _say(f"error: {_problem(job.scan, err)}")
            outcome = "failed after "
        else:
            done += 1
            outcome = ""
        _say(f"{label} {outcome}{progress.advance(time.perf_counter() - tic)}")

    total = time.perf_counter() - started
    _say(f"{PROG}: {done} segmented, {skipped} skipped, {failed} failed in {format_duration(total)}")
    return 1 if failed else 0


def _problem(scan: Path, err: BaseException) -> str:
    """``<path>: <problem>``, one line, for a scan that failed."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    if isinstance(err, (ImageError,)) and text.startswith(str(err.path)):
        return text
    if isinstance(err, MemoryError):
        text = "out of memory (try --crop with a smaller size)"
    elif not isinstance(err, (ValueError, OSError)):
        text = f"{type(err).__name__}: {text}"
    return f"{scan}: {text}"
