"""The BIDS-App: ``synthseg-bids bids_dir output_dir {participant,group} [options]``.

The command line parses, selects, builds, runs and summarises; the work itself is the
Nipype workflow's. Participant level:

1. parse the arguments into an :class:`~synthseg_bids.workflows.config.AppConfig`
   (:mod:`.parser`);
2. validate the dataset and select its scans (:mod:`synthseg_bids.bids`), leaving out
   those an earlier run finished with the same input and model;
3. build :func:`~synthseg_bids.workflows.base.init_participant_wf` (segmentation,
   derivatives, figures and each subject's report) and run it with the chosen plugin
   (Linear and MultiProc in their scan-by-scan form, :mod:`.plugins`);
4. summarise: a line per finished scan while it runs (count, the scan's own time, the
   wall time since the previous scan finished, time left; from Nipype's status callback
   in this process, whatever the plugin runs the nodes in), then the totals with the
   run's total time, the reports, and a line per failed scan naming its crash file
   (``<output_dir>/logs/<run_uuid>/<scan>/crash-*.txt``).

Exit status: 0 every selected scan is done, 1 some failed (or bad dataset), 2 bad
command line.

Group level: gathers every volumes table of ``output_dir`` into ``group/``
(volumes, summary, outliers) and, with reference segmentations, the evaluation tables
and the Wilcoxon comparison with ``--compare-dir``. It keeps nothing in the work folder:
Nipype's files go to a temporary folder inside it, removed at the end.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main"]

LOGGER = logging.getLogger("synthseg_bids.cli")
#: Nipype plugins that run nodes on this machine, and how often they look for finished nodes.
LOCAL_PLUGINS = ("MultiProc", "LegacyMultiProc")
LOCAL_POLL_SECONDS = 0.1
#: Local plugins replaced by their scan-by-scan version (:mod:`.plugins`).
SCAN_FIRST_PLUGINS = {"Linear": "ScanFirstLinearPlugin", "MultiProc": "ScanFirstMultiProcPlugin"}
#: Last line of a Python traceback: ``module.ErrorType: message``.
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit)): (.+)$")


def _error(message: str) -> int:
    print(f"synthseg-bids: error: {message}", file=sys.stderr)
    return 1


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity + 1, 2)
    logging.basicConfig(format="%(asctime)s | %(levelname)-7s | %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("synthseg_bids").setLevel(level)
    from nipype import config as ncfg, logging as nlogging

    ncfg.set("execution", "check_version", "false")
    nipype_level = "INFO" if verbosity >= 2 else "WARNING"
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        nlogging.getLogger(name).setLevel(nipype_level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the BIDS-App; returns the exit status (never raises SystemExit)."""
    started = time.perf_counter()
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    from .parser import parse_args

    try:
        config = parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    _setup_logging(config.verbosity)
    from ..bids import BIDSError

    try:
        if config.analysis_level == "participant":
            LOGGER.info("synthseg-bids participant level: %s -> %s; work folder %s (Nipype's intermediate files, "
                        "reused by re-runs; -w to choose another)", config.bids_dir, config.output_dir,
                        config.work_dir)
            return run_participant(config, started)
        LOGGER.info("synthseg-bids group level: %s -> %s", config.output_dir, Path(config.output_dir) / "group")
        return run_group(config, started)
    except BIDSError as err:
        return _error(str(err))
    except OSError as err:  # output/work folder not writable, disk full, a file where a folder is expected...
        where = f"{err.filename}: " if err.filename else ""
        return _error(f"{where}{err.strerror or err}")


def _versions(model: str, model_sha256: str) -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    versions = {"version": __version__, "python": platform.python_version(), "model": model,
                "model_sha256": model_sha256}
    for key, package in (("nipype", "nipype"), ("pybids", "pybids"), ("tensorflow", "tensorflow")):
        try:
            versions[key] = version(package)
        except PackageNotFoundError:  # a missing package is just unknown
            versions[key] = "unknown"
    return versions


def _plugin(config) -> tuple[str, dict]:
    if config.use_plugin:
        import yaml

        from ..bids import BIDSError

        try:
            settings = yaml.safe_load(Path(config.use_plugin).read_text()) or {}
        except yaml.YAMLError as err:
            raise BIDSError(f"--use-plugin: {config.use_plugin} is not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(settings, dict) or "plugin" not in settings:
            raise BIDSError(f"--use-plugin: {config.use_plugin} must define 'plugin' (and optionally 'plugin_args')")
        # Nipype's batch plugins (SLURM, SGE, PBS, ...) name jobs after $LOGNAME, which
        # `apptainer run --cleanenv` and some job environments leave unset.
        os.environ.setdefault("LOGNAME", _user_name())
        return str(settings["plugin"]), dict(settings.get("plugin_args") or {})
    if config.nprocs == 1:
        return "Linear", {}
    args = {"n_procs": config.nprocs, "raise_insufficient": False}
    if config.mem_gb:
        args["memory_gb"] = config.mem_gb
    return "MultiProc", args


def _user_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return str(os.getuid())


def run_participant(config, started: float) -> int:
    """Segment the selected scans (``started``: ``time.perf_counter()`` when the command began)."""
    from ..bids import (
        collect_scans,
        remove_stale_temporaries,
        scan_is_done,
        validate_dataset,
        write_derivatives_description,
    )

    if config.skip_bids_validation:
        LOGGER.warning("--skip-bids-validation: %s is not checked by the BIDS validator (bids-validator-deno), "
                       "and pybids also indexes files whose names break BIDS", config.bids_dir)
    else:
        errors = validate_dataset(config.bids_dir)
        if errors:
            shown = "; ".join(errors[:5]) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
            return _error(f"{config.bids_dir} is not a valid BIDS dataset: {shown} "
                          "(use --skip-bids-validation to go on anyway)")
    subjects = collect_scans(config.bids_dir, participant_label=config.participant_label,
                             session_label=config.session_label, bids_filters=config.bids_filters,
                             validate=not config.skip_bids_validation)
    n_scans = sum(len(v) for v in subjects.values())
    if n_scans == 0:
        return _error(f"no anatomical scan selected in {config.bids_dir} "
                      "(check --participant-label, --session-label and --bids-filter-file)")
    from ..network import ModelFileError

    try:
        # absolute paths, the shipped model named: what config.toml records and the nodes (in folders of their own) get
        config = config.replace(model=config.model.resolved())
        model = config.model.files().segmentation  # with --model-dir, its segmentation network names it
        identity = config.model.identity()
    except ModelFileError as err:
        return _error(str(err))
    label_table, model_sha256 = identity.label_table, identity.sha256

    parcellation = config.model.parcellation
    parcellation_table = None
    if parcellation:
        from ..network.official import DK_PARCELLATION_TABLE as parcellation_table
    from ..workflows.config import container_info

    output_dir = Path(config.output_dir)
    container = (config.container, container_info()[1] if config.container else "")
    write_derivatives_description(output_dir, Path(config.bids_dir), container,
                                  label_table=label_table, parcellation_table=parcellation_table)
    run_log_dir = config.log_dir / config.run_uuid
    run_log_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_log_dir / "config.toml")
    if config.work_dir:
        config.save(Path(config.work_dir) / config.run_uuid / "config.toml")

    def done(scan):
        return scan_is_done(scan, output_dir, model_sha256, config.write_posteriors, parcellation=parcellation)

    todo = {s: [scan for scan in scans if not done(scan)] for s, scans in subjects.items()}
    skipped = n_scans - sum(len(v) for v in todo.values())
    for scans in todo.values():
        for scan in scans:
            remove_stale_temporaries(scan, output_dir)
    LOGGER.info("%d scan(s) selected in %d subject(s); %d already done, %d to segment",
                n_scans, len(subjects), skipped, n_scans - skipped)
    versions = _versions(str(model), model_sha256)
    versions["n_structures"] = str(len(label_table) - 1)
    versions.update(run_uuid=config.run_uuid, command=shlex.join(["synthseg-bids", *sys.argv[1:]]))
    failures = _run_participant_wf(config, todo, model_sha256, versions, run_log_dir)
    # a scan whose derivatives are incomplete counts as failed even without a failed node
    for scans in todo.values():
        for scan in scans:
            if scan not in failures and not done(scan):
                failures[scan] = ("outputs are incomplete (see the logs)", _crash_file(run_log_dir, scan))
    if failures:
        _write_failure_reports(config, subjects, failures, versions, run_log_dir)
    return _summarise(config, subjects, failures, n_scans, skipped, started)


def _summarise(config, subjects: dict, failures: dict, n_scans: int, skipped: int, started: float) -> int:
    """Log the run's outcome and its reports, print one error line per failed scan; the exit status."""
    from ..core.progress import format_duration

    output_dir = Path(config.output_dir)
    done = n_scans - len(failures)
    LOGGER.info("synthseg-bids: %d/%d scan(s) done (%d skipped as already done), %d failed; total time %s; "
                "outputs in %s", done, n_scans, skipped, len(failures),
                format_duration(time.perf_counter() - started), output_dir)
    reports = [output_dir / f"sub-{s}.html" for s in subjects if (output_dir / f"sub-{s}.html").is_file()]
    if reports:
        LOGGER.info("reports: %s", " ".join(map(str, reports)))
    for scan, (message, crash) in sorted(failures.items()):
        where = f" (crash file: {crash})" if crash else ""
        print(f"synthseg-bids: error: {Path(scan).relative_to(config.bids_dir)}: {message}{where}", file=sys.stderr)
    return 1 if failures else 0


class _ScanTracker:
    """Nipype status callback: which scans finished or failed, with a progress line for each.

    Called in this process by every plugin that supports status callbacks (Linear,
    MultiProc, and the SLURM/SGE/PBS batch plugins), whichever process ran the node.
    A scan is finished when its last derivative sink ends, failed when any of its nodes
    raises. Its line gives the scan's own time (first node started to last node ended)
    and the wall time since the previous scan finished: with several processes the scans'
    own times overlap, and the gaps add up to the run's wall time.
    """

    def __init__(self, scans: Sequence[str], bids_dir: Path, last_sink: str) -> None:
        from ..core.progress import Progress
        from ..workflows.base import scan_workflow_name

        self._names = {scan_workflow_name(s): s for s in scans}
        self._bids_dir = bids_dir
        self._last_sink = last_sink
        self._progress = Progress(total=len(scans))
        self._started: dict[str, float] = {}
        self._previous = time.perf_counter()
        self.failed: dict[str, object] = {}
        self.finished: set[str] = set()

    def scan_of(self, node) -> str | None:
        parts = f"{node._hierarchy or ''}.{node.name}".split(".")
        return next((self._names[p] for p in parts if p in self._names), None)

    def __call__(self, node, status: str) -> None:
        scan = self.scan_of(node)
        if scan is None or scan in self.finished:
            return
        now = time.perf_counter()
        if status == "start":
            self._started.setdefault(scan, now)
        elif status == "exception":
            self.failed[scan] = node
            self._finish(scan, now, "FAILED after")
        elif status == "end" and node.name == self._last_sink:
            self._finish(scan, now, "done in")

    def _finish(self, scan: str, now: float, outcome: str) -> None:
        from ..core.progress import format_duration

        self.finished.add(scan)
        gap = now - self._previous
        self._progress.advance(gap)  # wall time between completions: ETA right with parallel nodes
        self._previous = now
        took = now - self._started.get(scan, now)
        since = "since the workflow started" if self._progress.finished == 1 else "after the previous scan"
        LOGGER.info("[%d/%d] %s %s %s, %s %s (eta %s)", self._progress.finished, self._progress.total,
                    Path(scan).relative_to(self._bids_dir), outcome, format_duration(took), format_duration(gap),
                    since, format_duration(self._progress.eta()))


def _node_error(node) -> str:
    """The error a failed node raised, from its Nipype result (``runtime.traceback``)."""
    try:
        traceback = node.result.runtime.traceback or ""
    except Exception:  # noqa: BLE001 - no result file (the node failed before running its interface)
        traceback = ""
    found = [m for m in (_EXCEPTION_LINE.match(line.strip()) for line in traceback.splitlines()) if m]
    return found[-1].group(3) if found else "failed (see the crash file)"


def _crash_file(run_log_dir: Path, scan: str) -> Path | None:
    from ..workflows.base import scan_crashdump_dir

    crashes = sorted(scan_crashdump_dir(run_log_dir, scan).glob("crash-*"), key=lambda p: p.stat().st_mtime)
    return crashes[-1] if crashes else None


def _configure(workflow, config, run_log_dir: Path, base_dir: str | None = None) -> None:
    workflow.base_dir = base_dir or str(config.work_dir)
    workflow.config["execution"].update({
        "crashdump_dir": str(run_log_dir),
        "crashfile_format": "txt",
        "stop_on_first_crash": str(config.stop_on_first_crash).lower(),
        "remove_unnecessary_outputs": "true",
        "check_version": "false",
    })  # fmt: skip


def _run_participant_wf(config, todo, model_sha256, versions, run_log_dir: Path) -> dict[str, tuple]:
    """Build and run the participant workflow; returns ``{scan: (error message, crash file)}`` of failed scans."""
    from ..workflows.base import init_participant_wf, segmentation_order
    from ..workflows.outputs import LAST_SINK

    metadata = {
        "Model": versions["model"],
        "ModelSHA256": model_sha256,
        "Version": versions["version"],
        "Config": {k: v for k, v in config.to_dict().items() if v is not None},
    }
    plugin, plugin_args = _plugin(config)
    # one process, one node at a time in a known order: each scan's network runs while the
    # previous scan's files are written (MultiProc and batch plugins run nodes elsewhere)
    workflow = init_participant_wf(config=config, subjects=todo, metadata=metadata, versions=versions,
                                   crashdump_dir=run_log_dir, look_ahead=plugin == "Linear")
    from ..reports.methods import workflow_description, write_citation

    write_citation(config.log_dir, workflow_description(workflow))
    _configure(workflow, config, run_log_dir)
    if plugin in LOCAL_PLUGINS:
        # Nipype checks for finished nodes every poll_sleep_duration (2 s by default): with
        # about six nodes per scan that idled ~4 s per scan. Local checks are cheap; batch
        # plugins (SLURM, SGE) keep the default, as each check there calls squeue/qstat.
        workflow.config["execution"]["poll_sleep_duration"] = str(LOCAL_POLL_SECONDS)
    scans = segmentation_order(todo)
    tracker = _ScanTracker(scans, Path(config.bids_dir), LAST_SINK)
    if not plugin.endswith("Graph"):  # Nipype's graph plugins submit everything at once: no callbacks
        plugin_args["status_callback"] = tracker
    runner = plugin
    if plugin in SCAN_FIRST_PLUGINS:  # the same plugin, finishing each scan before the next one's later steps
        from . import plugins

        runner = getattr(plugins, SCAN_FIRST_PLUGINS[plugin])(plugin_args, group_of=tracker.scan_of, order=scans)
    try:
        workflow.run(plugin=runner, plugin_args=plugin_args)
    except Exception as err:  # Nipype re-raises the first failed node's error once every branch ran
        if not (tracker.failed or isinstance(err, RuntimeError)):
            raise
        LOGGER.debug("workflow finished with errors: %s", err)
    return {scan: (_node_error(node), _crash_file(run_log_dir, scan)) for scan, node in tracker.failed.items()}


def _write_failure_reports(config, subjects, failures, versions, run_log_dir: Path) -> None:
    """Rewrite the reports of subjects with a failed scan (Nipype skipped them), listing the failures."""
    from ..workflows.base import init_reports_wf

    errors = {}
    for subject, scans in subjects.items():
        messages = [f"{Path(s).name}: {failures[s][0]}" for s in scans if s in failures]
        if messages:
            errors[subject] = messages
    workflow = init_reports_wf(output_dir=config.output_dir, errors=errors, versions=versions)
    _configure(workflow, config, run_log_dir)
    workflow.run(plugin="Linear")


def run_group(config, started: float) -> int:
    """Write the group tables (``started``: ``time.perf_counter()`` when the command began)."""
    from ..bids import BIDSError
    from ..core.progress import format_duration

    output_dir = Path(config.output_dir)
    tsvs = sorted(p for p in output_dir.glob("sub-*/**/*_volumes.tsv"))
    if config.participant_label:
        tsvs = [p for p in tsvs if p.name.split("_")[0][4:] in config.participant_label]
    if not tsvs:
        raise BIDSError(f"no participant-level results in {output_dir}; run the participant level first")
    reference = config.reference_dir
    default_reference = Path(config.bids_dir) / "derivatives" / "manual"
    if reference is None and default_reference.is_dir():
        reference = default_reference
    from ..workflows.group import init_group_wf

    run_log_dir = config.log_dir / config.run_uuid
    run_log_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_log_dir / "config.toml")
    from ..bids import is_parcellation

    # the parcellation label maps (--parc) hold Desikan-Killiany parcels, not the reference's structures
    predictions = sorted(str(p) for p in output_dir.glob("sub-*/**/*_dseg.nii.gz") if not is_parcellation(p))
    if config.participant_label:
        predictions = [p for p in predictions if Path(p).name.split("_")[0][4:] in config.participant_label]
    workflow = init_group_wf(
        output_dir=str(output_dir),
        volumes_files=[str(p) for p in tsvs],
        predictions=predictions,
        reference_dir=str(reference) if reference else None,
        compare_dir=str(config.compare_dir) if config.compare_dir else None,
        participants_tsv=str(Path(config.bids_dir) / "participants.tsv"),
    )
    failed = []
    work_dir = Path(config.work_dir)
    made_work_dir = not work_dir.exists()
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="group_", dir=work_dir) as scratch:
            _configure(workflow, config, run_log_dir, base_dir=scratch)
            workflow.run(plugin="Linear", plugin_args={"status_callback": lambda node, status: (
                failed.append(node) if status == "exception" else None)})
    except RuntimeError:
        crashes = sorted(run_log_dir.glob("crash-*"), key=lambda p: p.stat().st_mtime)
        message = _node_error(failed[0]) if failed else "see the logs"
        return _error(f"group level failed: {message}" + (f" (crash file: {crashes[-1]})" if crashes else ""))
    finally:
        if made_work_dir and not any(work_dir.iterdir()):
            work_dir.rmdir()
    LOGGER.info("synthseg-bids: group tables and report written to %s (open %s); total time %s", output_dir / "group",
                output_dir / "group" / "report.html",
                format_duration(time.perf_counter() - started))
    return 0
