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
each scan, with the rows of earlier runs kept and those of re-segmented scans replaced
(layout and number formats: :mod:`.segment_tables`).

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

TensorFlow is imported only once the arguments and paths have been checked. The scans and
their output paths are resolved in :mod:`.segment_jobs`, the tables written by
:mod:`.segment_tables`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .. import __version__
from ..core.io import ImageError, atomic_path
from ..core.progress import Progress, format_duration
from .arguments import (
    CommandParser,
    add_accuracy_options,
    add_official_model_options,
    model_choice_of,
    positive_int,
)
from .segment_jobs import InputError, Job, UsageError, resolve_jobs
from .segment_tables import Table, qc_row, volume_row

if TYPE_CHECKING:
    from ..inference.model_choice import ModelChoice

__all__ = ["PROG", "UNSUPPORTED", "Job", "UsageError", "build_parser", "main", "resolve_jobs", "settings_from_args"]

PROG = "synthseg-bids segment"

#: SynthSeg options that need models this project does not provide -> explanation.
UNSUPPORTED: dict[str, str] = {
    "photo": "--photo (Photo-SynthSeg, for stacks of dissection photographs) needs a network that "
    "synthseg-bids does not have",
}


class _Stop(Exception):
    """A problem that stops the command before any scan: one line on stderr, exit status 1."""


# -- parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``synthseg-bids segment`` (imports nothing heavy)."""
    parser = CommandParser(
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
    for option, metavar, text in (
        ("--vol", "CSV", "CSV of volumes (mm^3): one row per scan ('scan' column), one column per structure and "
         "'total intracranial', 3 decimals; rows of scans segmented earlier are kept, re-segmented ones updated"),
        ("--qc", "CSV", "CSV of automatic quality-control scores, one row per scan: per structure group the mean "
         "confidence and (without --fast) the left/right flip Dice, 4 decimals, and a 'flag' column (true/false); "
         "an empty cell where a score cannot be computed"),
        ("--post", "PATH", "posteriors (4D float32, one volume per label, on the input's grid): same form as --o "
         "(folder outputs are named <name>_posteriors<ext>)"),
        ("--resample", "PATH", "the input as the network saw it: resampled to the model's resolution (1 mm), "
         "RAS-oriented, intensities normalised to [0, 1]; same form as --o (<name>_resampled<ext>)"),
    ):
        io_group.add_argument(option, metavar=metavar, help=text)
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


def _parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, ModelChoice, Any, list[Job]]:
    """The options, their model choice, their inference settings and the jobs; a usage error exits
    (status 2) through argparse.

    Raises
    ------
    _Stop
        A missing or unreadable input.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    for option, message in UNSUPPORTED.items():
        if getattr(args, option):
            parser.error(message)
    if args.crop is not None and len(args.crop) not in (1, 3):
        parser.error(f"argument --crop: give 1 or 3 sizes, got {len(args.crop)}")
    # with --model-dir, --qc CSV gets the QC network's scores (without it, the posterior-based QC)
    model = model_choice_of(parser, args, network_qc=args.model_dir is not None and args.qc is not None)

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
        raise _Stop(str(err)) from None
    return args, model, settings, jobs


# -- the model: chosen from the options, loaded once -------------------------------


def _check_files(model: ModelChoice) -> None:
    """That the files of the model choice are there; a missing one raises :class:`_Stop`."""
    from ..network import ModelFileError

    try:
        model.files()
    except ModelFileError as err:
        raise _Stop(str(err)) from None


def _load_segmenter(model: ModelChoice, settings: Any) -> Any:
    """The segmenter of the model choice; a model or device problem raises :class:`_Stop`."""
    from ..inference.device import DeviceError
    from ..network import ModelFileError

    try:
        return model.load(settings)
    except (ModelFileError, DeviceError, ImageError) as err:
        raise _Stop(str(err)) from None


# -- running -----------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _needs_work(job: Job, tables: list[Table], overwrite: bool) -> bool:
    if overwrite:
        return True
    return not all(p.exists() for p in job.outputs()) or any(job.key not in t for t in tables)


def _wanted(path: Path | None, overwrite: bool) -> Path | None:
    """``path`` if it is to be written: asked for, and missing or to be overwritten."""
    return path if path is not None and (overwrite or not path.exists()) else None


def _options(job: Job, overwrite: bool) -> dict[str, bool]:
    """What :meth:`~synthseg_bids.inference.SegmenterProtocol.segment` is asked to return besides the labels."""
    return {"posteriors": _wanted(job.post, overwrite) is not None,
            "resampled": _wanted(job.resample, overwrite) is not None}


def _segment_one(segmenter: Any, job: Job, overwrite: bool, next_job: Job | None = None) -> Any:
    """Segment ``job.scan`` and write its missing (or, with ``overwrite``, all) outputs; ``next_job``'s
    scan is segmented ahead (in the background) while they are written."""
    from ..core.io import save_image
    from ..inference import write_result

    post, resample = _wanted(job.post, overwrite), _wanted(job.resample, overwrite)
    result = segmenter.segment(job.scan, **_options(job, overwrite))
    if next_job is not None:
        segmenter.segment_ahead(next_job.scan, **_options(next_job, overwrite))
    # with a parcellation network, --o gets the cortex parcels (as mri_synthseg --parc)
    written = result
    if result.parcellation is not None:
        written = dataclasses.replace(result, labels=result.parcellation)
    with contextlib.ExitStack() as stack:
        if resample is not None:
            tmp = stack.enter_context(atomic_path(resample))
            save_image(result.resampled.data, result.resampled.affine, tmp)
        write_result(written, labels=_wanted(job.seg, overwrite), posteriors=post)
    return result


def _open_tables(args: argparse.Namespace) -> dict[str, Table]:
    """The ``--vol`` and ``--qc`` tables asked for, with their earlier rows; an unreadable one raises :class:`_Stop`."""
    try:
        return {name: Table(Path(path)) for name, path in (("volumes", args.vol), ("qc", args.qc)) if path is not None}
    except InputError as err:
        raise _Stop(str(err)) from None


def _run_jobs(segmenter: Any, jobs: list[Job], tables: dict[str, Table], overwrite: bool,
              n_todo: int) -> tuple[int, int, int]:
    """Segment every job that needs it, one line per scan; returns the counts (done, skipped, failed)."""
    done = failed = skipped = 0
    progress = Progress(total=n_todo)
    rows = {"volumes": volume_row, "qc": qc_row}
    todo = [i for i, job in enumerate(jobs) if _needs_work(job, list(tables.values()), overwrite)]
    following = dict(zip(todo, todo[1:]))  # each scan to segment -> the next one
    for i, job in enumerate(jobs, start=1):
        label = f"[{i}/{len(jobs)}] {job.scan.name}"
        if not _needs_work(job, list(tables.values()), overwrite):
            skipped += 1
            _say(f"{label} skipped (outputs exist; --overwrite to redo)")
            continue
        tic = time.perf_counter()
        next_index = following.get(i - 1)
        try:
            result = _segment_one(segmenter, job, overwrite, None if next_index is None else jobs[next_index])
            for name, table in tables.items():
                table.update(job.key, rows[name](result))
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
    return done, skipped, failed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    try:
        args, model, settings, jobs = _parse(argv)
        _check_files(model)
        tables = _open_tables(args)
    except _Stop as err:
        _say(f"{PROG}: error: {err}")
        return 1
    todo = [job for job in jobs if _needs_work(job, list(tables.values()), args.overwrite)]
    n = len(jobs)
    if not todo:
        _say(f"{PROG}: all {n} scan(s) have their outputs already (use --overwrite to segment them again)")
        return 0

    started = time.perf_counter()
    try:
        segmenter = _load_segmenter(model, settings)
    except _Stop as err:
        _say(f"{PROG}: error: {err}")
        return 1
    _say(f"{PROG}: {n} scan(s) ({n - len(todo)} with outputs already), model {segmenter.describe()} on "
         f"{segmenter.network.device} (loaded in {format_duration(time.perf_counter() - started)})")
    done, skipped, failed = _run_jobs(segmenter, jobs, tables, args.overwrite, len(todo))
    _say(f"{PROG}: {done} segmented, {skipped} skipped, {failed} failed in "
         f"{format_duration(time.perf_counter() - started)}")
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
