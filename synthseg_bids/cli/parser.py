"""Command line of the BIDS-App (fMRIPrep's argument names and checks).

``_build_parser()`` only builds the parser; :func:`parse_args` parses, checks the
arguments against the file system (through ``parser.error``: one line
``synthseg-bids: error: ...`` on stderr, exit status 2; requested participants and
sessions must have their ``sub-*`` / ``ses-*`` folders) and returns an
:class:`~synthseg_bids.workflows.config.AppConfig`. Nothing here imports TensorFlow,
pybids or Nipype, so ``--help`` and ``--version`` are fast.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Sequence

from .. import __version__
from .arguments import (
    CommandParser,
    add_accuracy_options,
    add_official_model_options,
    model_choice_of,
    positive_int,
)

__all__ = ["parse_args"]

PROG = "synthseg-bids"
#: BIDS labels (participant, session): alphanumeric only, so they can never form a path.
_LABEL = re.compile(r"^[A-Za-z0-9]+$")
_FILTER_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: Keyword arguments of ``BIDSLayout.get`` that a filter file may not set.
_RESERVED_QUERY_KEYS = {"return_type", "target", "scope", "regex_search", "absolute_paths", "invalid_filters"}
#: Options that :func:`parse_args` passes to :class:`AppConfig` unchanged, under the same name.
_AS_GIVEN = ("analysis_level", "device", "precision", "shifts", "nprocs", "mem_gb",
             "use_plugin", "write_posteriors", "inference_settings", "skip_bids_validation", "reference_dir",
             "compare_dir", "stop_on_first_crash")


def _drop_prefix(prefix: str):
    def convert(value: str) -> str:
        value = value.strip()
        return value[len(prefix):] if value.startswith(prefix) else value

    return convert


def _path_exists(parser: argparse.ArgumentParser, kind: str = "any"):
    def check(value: str) -> Path:
        path = Path(value).expanduser()
        if not path.exists():
            parser.error(f"{kind} does not exist: {value}")
        if kind == "file" and not path.is_file():
            parser.error(f"not a file: {value}")
        if kind == "folder" and not path.is_dir():
            parser.error(f"not a folder: {value}")
        return path.absolute()

    return check


def _filter_file(parser: argparse.ArgumentParser):
    def check(value: str) -> str:
        path = Path(value).expanduser()
        if not path.is_file():
            parser.error(f"--bids-filter-file: file does not exist: {value}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            parser.error(f"--bids-filter-file: {value} is not valid JSON ({err.msg}, line {err.lineno} column {err.colno})")
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            parser.error(f"--bids-filter-file: {value} must hold an object of queries, "
                         'e.g. {"anat": {"acquisition": "mprage"}}')
        for query, entities in data.items():
            for key, values in entities.items():
                where = f"--bids-filter-file: {value}: {query}.{key}"
                if not _FILTER_KEY.match(key) or key in _RESERVED_QUERY_KEYS:
                    parser.error(f"{where}: not a BIDS entity name")
                for item in values if isinstance(values, list) else [values]:
                    if item is not None and not isinstance(item, (str, int)):
                        parser.error(f"{where}: values must be strings, numbers or null, got {item!r}")
                    if isinstance(item, str) and ("/" in item or "\\" in item or ".." in item):
                        parser.error(f"{where}: value {item!r} contains a path part ('/', '\\' or '..'); "
                                     "filter values are BIDS labels and cannot point outside the dataset")
        return json.dumps(data)

    return check


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append ``(default: X)`` only where it tells something.

    Not for flags (``store_true``), options whose default is ``None`` (the help text
    says what happens then) or help texts that already state their default.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return super()._get_help_string(action)


def _build_parser() -> argparse.ArgumentParser:
    """The BIDS-App argument parser (no checks that touch the file system happen here)."""
    parser = CommandParser(
        prog=PROG,
        description=f"synthseg-bids {__version__}: contrast- and resolution-agnostic brain segmentation "
        "(SynthSeg's method) of every anatomical scan of a BIDS dataset. Tool subcommands: "
        "'synthseg-bids segment ...', 'synthseg-bids evaluate ...'; whole jobs: 'synthseg-bids train ...', "
        "'synthseg-bids generate ...', 'synthseg-bids evaluate-model ...' (each with --help).",
        formatter_class=_HelpFormatter,
    )
    folder = _path_exists(parser, "folder")
    file = _path_exists(parser, "file")

    parser.add_argument("bids_dir", type=Path, help="root folder of a BIDS dataset (with dataset_description.json)")
    parser.add_argument("output_dir", type=Path, help="output folder (a BIDS derivatives dataset)")
    parser.add_argument("analysis_level", choices=["participant", "group"],
                        help="'participant' segments scans; 'group' gathers volumes and evaluations")
    parser.add_argument("--version", action="version", version=f"synthseg-bids {__version__}")

    g_bids = parser.add_argument_group("Options for filtering the BIDS queries")
    g_bids.add_argument("--participant-label", "--participant_label", dest="participant_label", nargs="+",
                        type=_drop_prefix("sub-"), metavar="LABEL",
                        help="subjects to analyse, with or without 'sub-' (default: all)")
    g_bids.add_argument("--session-label", "--session_label", "--session-id", dest="session_label", nargs="+",
                        type=_drop_prefix("ses-"), metavar="LABEL",
                        help="sessions to analyse, with or without 'ses-' (default: all)")
    g_bids.add_argument("--bids-filter-file", "--bids_filter_file", dest="bids_filters", metavar="FILE",
                        type=_filter_file(parser),
                        help='JSON of pybids queries refining the selection, e.g. {"anat": {"suffix": "T1w"}} '
                        "(default selection: every anat scan of any contrast)")
    g_bids.add_argument("--skip-bids-validation", "--skip_bids_validation", dest="skip_bids_validation",
                        action="store_true", help="do not run the BIDS validator (bids-validator-deno) on the "
                        "input dataset before segmenting, and let pybids also select files whose names break BIDS")

    g_perf = parser.add_argument_group("Options to handle performance")
    g_perf.add_argument("--nprocs", "--nthreads", "--n_cpus", "--n-cpus", dest="nprocs",
                        type=positive_int, default=os.cpu_count() or 1,
                        help="processes run in parallel (Nipype MultiProc; 1 runs Linear; "
                        "default: the number of CPUs, %(default)s here)")
    g_perf.add_argument("--omp-nthreads", "--omp_nthreads", dest="omp_nthreads",
                        type=positive_int, default=None,
                        help="CPU threads per segmentation (default: --nprocs)")
    g_perf.add_argument("--mem-gb", "--mem_gb", "--mem", dest="mem_gb", type=float, default=0.0,
                        help="memory limit in GB for the MultiProc scheduler (0: no limit)")
    g_perf.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                        help="where the network runs ('auto': a GPU if one is visible)")
    add_accuracy_options(g_perf)
    g_perf.add_argument("--use-plugin", "--use_plugin", "--nipype-plugin-file", dest="use_plugin", metavar="FILE",
                        type=file, help="Nipype plugin settings YAML (e.g. 'plugin: SLURM' with 'plugin_args')")

    g_seg = parser.add_argument_group("Options for the segmentation")
    g_seg.add_argument("--model", type=file, metavar="FILE",
                       help="model file (.npz, or one of SynthSeg's Keras .h5 segmentation networks; default: the "
                       "shipped model)")
    add_official_model_options(g_seg, folder_type=folder,
                               parc_output="a second label map _desc-synthsegparc<contrast>_dseg.nii.gz, "
                               "their volumes in the _volumes.tsv")
    g_seg.add_argument("--qc", action="store_true",
                       help="SynthSeg's QC network (synthseg_qc_2.0.h5; needs --model-dir): its 8 group scores "
                       "as qc_network_* columns of the _volumes.tsv and in the report")
    g_seg.add_argument("--write-posteriors", "--write_posteriors", dest="write_posteriors", action="store_true",
                       help="also write the 4D _probseg map (volume i = row i of dseg.tsv)")
    g_seg.add_argument("--inference-settings", "--inference_settings", dest="inference_settings", type=file,
                       metavar="FILE", help="TOML/JSON of prediction settings (flip, postprocess, min_size, "
                       "qc thresholds...; see synthseg_bids.inference.InferenceSettings)")

    g_group = parser.add_argument_group("Options for the group level")
    g_group.add_argument("--reference-dir", "--reference_dir", dest="reference_dir", type=folder, metavar="DIR",
                         help="reference segmentations to score against (default: <bids_dir>/derivatives/manual "
                         "when it exists)")
    g_group.add_argument("--compare-dir", "--compare_dir", dest="compare_dir", type=folder, metavar="DIR",
                         help="another method's segmentations, compared with ours (Wilcoxon, per structure)")

    g_other = parser.add_argument_group("Other options")
    g_other.add_argument("-w", "--work-dir", "--work_dir", dest="work_dir", type=Path, metavar="DIR",
                         help="Nipype working folder for intermediate files, reused by re-runs; delete it when "
                         "done (default: 'work' in the current folder, as fMRIPrep)")
    g_other.add_argument("--stop-on-first-crash", action="store_true",
                         help="stop at the first failed scan instead of going on with the others")
    g_other.add_argument("-v", "--verbose", dest="verbose_count", action="count", default=0,
                         help="more verbose output (-vv for debugging)")
    return parser


def parse_args(args: Sequence[str] | None = None):
    """Parse and check the command line; returns an :class:`AppConfig` (exits on errors)."""
    from ..workflows.config import AppConfig

    parser = _build_parser()
    opts = parser.parse_args(args)

    bids_dir = opts.bids_dir.expanduser().absolute()
    output_dir = opts.output_dir.expanduser().absolute()
    if not bids_dir.exists():
        parser.error(f"bids_dir does not exist: {opts.bids_dir}")
    if not bids_dir.is_dir():
        parser.error(f"bids_dir is not a folder: {opts.bids_dir}")
    if not (bids_dir / "dataset_description.json").is_file():
        parser.error(f"bids_dir is not a BIDS dataset (no dataset_description.json): {opts.bids_dir}")
    if output_dir.resolve() == bids_dir.resolve():
        parser.error("output_dir must differ from bids_dir")
    derivatives = bids_dir / "derivatives"
    if _inside(output_dir, bids_dir) and not (_inside(output_dir, derivatives) and not _same(output_dir, derivatives)):
        parser.error(f"output_dir {output_dir} is inside bids_dir, where only its derivatives folder may be "
                     f"written: use e.g. {derivatives / 'synthseg-bids'}, or a folder outside bids_dir")
    if output_dir.exists() and not output_dir.is_dir():
        parser.error(f"output_dir exists and is not a folder: {opts.output_dir}")

    work_dir = (opts.work_dir.expanduser() if opts.work_dir else Path("work")).absolute()
    if _inside(work_dir, bids_dir):
        given = "" if opts.work_dir else " (the default, 'work' in the current folder)"
        parser.error(f"work_dir {work_dir}{given} is inside bids_dir; give -w a folder outside the dataset")
    if work_dir.exists() and not work_dir.is_dir():
        parser.error(f"work_dir exists and is not a folder: {work_dir}")

    for option, labels in (("--participant-label", opts.participant_label), ("--session-label", opts.session_label)):
        bad = [label for label in labels or () if not _LABEL.match(label)]
        if bad:
            parser.error(f"{option}: invalid label(s) {', '.join(map(repr, bad))}; BIDS labels are letters and "
                         "digits only (no '/', '..', '_' or '-')")
    participants = tuple(dict.fromkeys(opts.participant_label or ()))
    sessions = tuple(dict.fromkeys(opts.session_label or ()))
    subject_dirs = [p for p in bids_dir.glob("sub-*") if p.is_dir()]
    _check_present(parser, "participant", participants, {p.name[4:] for p in subject_dirs}, f"in {bids_dir}")
    if participants:
        subject_dirs = [p for p in subject_dirs if p.name[4:] in participants]
    where = f"in {bids_dir}" + (f" for participant(s) {', '.join(participants)}" if participants else "")
    _check_present(parser, "session", sessions, {s.name[4:] for d in subject_dirs for s in d.glob("ses-*")
                                                 if s.is_dir()}, where)
    model = model_choice_of(parser, opts, network_qc=opts.qc)
    if model.folder is not None:  # the folder's networks (a missing shipped model is the run's error, exit 1)
        from ..network import ModelFileError

        try:
            model.files()
        except ModelFileError as err:
            parser.error(f"--model-dir: {err}")
    if opts.precision == "bfloat16":
        from ..inference.device import DeviceError
        from ..inference.precision import check_precision

        try:
            check_precision(opts.precision, opts.device)
        except DeviceError as err:
            parser.error(str(err))
    if opts.inference_settings:
        from ..core.settings import SettingsError
        from ..inference.settings import InferenceSettings

        try:
            InferenceSettings.from_file(opts.inference_settings)
        except SettingsError as err:
            parser.error(f"--inference-settings: {err}")
    run_uuid = f"{datetime.now():%Y%m%d-%H%M%S}_{uuid.uuid4().hex[:8]}"
    return AppConfig(
        bids_dir=bids_dir,
        output_dir=output_dir,
        work_dir=work_dir,
        participant_label=participants,
        session_label=sessions,
        bids_filters=opts.bids_filters or "",
        model=model,
        omp_nthreads=opts.omp_nthreads or 0,
        run_uuid=run_uuid,
        verbosity=opts.verbose_count,
        **{name: getattr(opts, name) for name in _AS_GIVEN},
    )


def _check_present(parser: argparse.ArgumentParser, kind: str, wanted: Sequence[str], present: set[str],
                   where: str) -> None:
    """A usage error when a requested participant or session label has no folder, listing those there are."""
    missing = [label for label in wanted if label not in present]
    if missing:
        parser.error(f"{kind} label(s) not found {where}: {', '.join(missing)} "
                     f"(available: {', '.join(sorted(present)) or 'none'})")


def _same(path: Path, folder: Path) -> bool:
    return path.resolve() == folder.resolve()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
