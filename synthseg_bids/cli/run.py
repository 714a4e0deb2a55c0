"""The BIDS-App: ``synthseg-bids bids_dir output_dir {participant,group} [options]``.

Participant level: selects the anatomical scans with pybids, skips those an earlier run
finished with the same input and model, segments the others with the Nipype
participant workflow, then writes one HTML report per subject. A failed scan leaves a
crash file in ``<output_dir>/logs/<run_uuid>/`` and a one-line error; the other scans go
on. Exit status: 0 every selected scan is done, 1 some failed (or bad dataset), 2 bad
command line.

Group level: gathers every volumes table of ``output_dir`` into ``group/``
(volumes, summary, outliers) and, with reference segmentations, the evaluation tables
and the Wilcoxon comparison with ``--compare-dir``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from glob import escape as glob_escape
from pathlib import Path
from typing import Sequence

__all__ = ["main"]

LOGGER = logging.getLogger("synthseg_bids.cli")
#: Nipype plugins that run nodes on this machine, and how often they look for finished nodes.
LOCAL_PLUGINS = ("MultiProc", "LegacyMultiProc")
LOCAL_POLL_SECONDS = 0.1


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
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .parser import parse_args

    try:
        config = parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    _setup_logging(config.verbosity)
    from .bids import BIDSError

    try:
        if config.analysis_level == "participant":
            return run_participant(config)
        return run_group(config)
    except BIDSError as err:
        return _error(str(err))
    except OSError as err:  # output/work folder not writable, disk full, a file where a folder is expected...
        where = f"{err.filename}: " if err.filename else ""
        return _error(f"{where}{err.strerror or err}")


def _versions(model: str, model_sha256: str) -> dict[str, str]:
    import platform

    from .. import __version__

    versions = {"version": __version__, "python": platform.python_version(), "model": model,
                "model_sha256": model_sha256}
    for key, module in (("nipype", "nipype"), ("pybids", "bids"), ("tensorflow", "tensorflow")):
        try:
            from importlib.metadata import version

            versions[key] = version({"bids": "pybids"}.get(module, module))
        except Exception:  # noqa: BLE001 - a missing package is just unknown
            versions[key] = "unknown"
    return versions


def _resolve_model(config) -> Path:
    from .bids import BIDSError

    if config.model:
        return Path(config.model).resolve()
    try:
        from ..inference import default_model_path
    except ImportError as err:
        raise BIDSError(f"no default model available ({err}); give one with --model") from None
    path = Path(default_model_path())
    if not path.is_file():
        raise BIDSError(f"the default model {path} is missing; give one with --model")
    return path


def _plugin(config) -> tuple[str, dict]:
    if config.use_plugin:
        import yaml

        from .bids import BIDSError

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


def run_participant(config) -> int:
    from ..interfaces.segmentation import file_sha256
    from ..interfaces.reports import write_subject_report
    from .bids import collect_scans, scan_is_done, validate_dataset, write_derivatives_description

    if not config.skip_bids_validation:
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
    model = _resolve_model(config)
    config = config.replace(model=model)
    from ..network import ModelFileError, read_model_file

    try:
        model_info = read_model_file(model).info
    except ModelFileError as err:
        return _error(str(err))
    model_sha256 = file_sha256(model)

    output_dir = Path(config.output_dir)
    write_derivatives_description(output_dir, Path(config.bids_dir), (config.container, ""),
                                  label_table=model_info.label_table)
    run_log_dir = config.log_dir / config.run_uuid
    run_log_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_log_dir / "config.toml")
    if config.work_dir:
        config.save(Path(config.work_dir) / config.run_uuid / "config.toml")

    todo: dict[str, list[str]] = {}
    skipped = 0
    for subject, scans in subjects.items():
        todo[subject] = [s for s in scans if not scan_is_done(s, output_dir, model_sha256, config.write_posteriors)]
        skipped += len(scans) - len(todo[subject])
    n_todo = sum(len(v) for v in todo.values())
    for scans in todo.values():
        for scan in scans:
            _remove_stale_temporaries(scan, output_dir)
    LOGGER.info("%d scan(s) selected in %d subject(s); %d already done, %d to segment",
                n_scans, len(subjects), skipped, n_todo)
    versions = _versions(str(model), model_sha256)
    versions["n_structures"] = str(len(model_info.label_table) - 1)
    failures: dict[str, str] = {}
    if n_todo:
        failures = _run_workflow(config, todo, model_sha256, versions, run_log_dir)
    # a scan whose derivatives are incomplete counts as failed even without a crash file
    for subject, scans in todo.items():
        for scan in scans:
            if scan not in failures and not scan_is_done(scan, output_dir, model_sha256, config.write_posteriors):
                failures[scan] = "outputs are incomplete (see the logs)"
    for subject in subjects:
        errors = [f"{Path(s).name}: {msg}" for s, msg in failures.items() if s in subjects[subject]]
        write_subject_report(output_dir, subject, versions=versions, errors=errors)
    for scan, message in sorted(failures.items()):
        print(f"synthseg-bids: error: {Path(scan).relative_to(config.bids_dir)}: {message}", file=sys.stderr)
    done = n_scans - len(failures)
    LOGGER.warning("synthseg-bids: %d/%d scan(s) done (%d skipped as already done), %d failed; outputs in %s",
                   done, n_scans, skipped, len(failures), output_dir)
    return 1 if failures else 0


def _remove_stale_temporaries(scan: str, output_dir: Path) -> None:
    """Delete temporary files a killed earlier run left next to this scan's derivatives.

    Only the temporaries of the scan's own derivative names are touched
    (``.<final name>.<random>.tmp<ext>``, see :func:`~synthseg_bids.core.io.atomic_path`),
    so runs on other scans sharing ``output_dir`` are never disturbed.
    """
    from .bids import derivative_path

    for suffix, extension, datatype in (("dseg", ".nii.gz", "anat"), ("dseg", ".json", "anat"),
                                        ("probseg", ".nii.gz", "anat"), ("probseg", ".json", "anat"),
                                        ("volumes", ".tsv", "anat"), ("volumes", ".json", "anat"),
                                        ("dseg", ".png", "figures")):
        final = derivative_path(scan, output_dir, suffix, extension, datatype=datatype)
        if final.parent.is_dir():
            for stale in final.parent.glob(f".{glob_escape(final.name)}.*.tmp*"):
                LOGGER.info("removing %s, left by an interrupted run", stale)
                stale.unlink(missing_ok=True)


def _run_workflow(config, todo, model_sha256, versions, run_log_dir: Path) -> dict[str, str]:
    """Build and run the participant workflow; returns {scan: error message} of failed scans."""
    from ..workflows.base import init_participant_wf, scan_workflow_name

    metadata = {
        "Model": str(config.model),
        "ModelSHA256": model_sha256,
        "Version": versions["version"],
        "Config": {k: v for k, v in config.to_dict().items() if v is not None},
    }
    workflow = init_participant_wf(config=config, subjects=todo, metadata=metadata)
    workflow.base_dir = str(config.work_dir)
    workflow.config["execution"].update({
        "crashdump_dir": str(run_log_dir),
        "crashfile_format": "txt",
        "stop_on_first_crash": str(config.stop_on_first_crash).lower(),
        "remove_unnecessary_outputs": "true",
        "check_version": "false",
    })  # fmt: skip
    plugin, plugin_args = _plugin(config)
    if plugin in LOCAL_PLUGINS:
        # Nipype checks for finished nodes every poll_sleep_duration (2 s by default): with
        # about six nodes per scan that idled ~4 s per scan. Local checks are cheap; batch
        # plugins (SLURM, SGE) keep the default, as each check there calls squeue/qstat.
        workflow.config["execution"]["poll_sleep_duration"] = str(LOCAL_POLL_SECONDS)
    start = time.time()
    try:
        workflow.run(plugin=plugin, plugin_args=plugin_args)
    except RuntimeError as err:  # Nipype: "Workflow did not execute cleanly"
        LOGGER.debug("workflow finished with errors: %s", err)
    names = {scan_workflow_name(s): s for scans in todo.values() for s in scans}
    failures: dict[str, str] = {}
    for crash in sorted(run_log_dir.glob("crash-*")):
        if crash.stat().st_mtime < start - 1:
            continue
        text = crash.read_text(errors="replace")
        scan = next((s for n, s in names.items() if f".{n}." in text or f"{n}." in text), None)
        if scan is not None and scan not in failures:
            failures[scan] = f"{_crash_message(text)} (crash file: {crash})"
    return failures


def _crash_message(text: str) -> str:
    """The most specific error line of a Nipype crash file."""
    lines = [ln.strip() for ln in text.splitlines()]
    pattern = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception)): (.+)$")
    found = [m for m in (pattern.match(ln) for ln in lines) if m]
    specific = [m for m in found if not m.group(1).endswith(("RuntimeError", "NodeExecutionError"))]
    match = (specific or found or [None])[-1]
    if match is None:
        return "failed (see the crash file)"
    return match.group(3)


def run_group(config) -> int:
    from .bids import BIDSError

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
    predictions = sorted(str(p) for p in output_dir.glob("sub-*/**/*_dseg.nii.gz"))
    if config.participant_label:
        predictions = [p for p in predictions if Path(p).name.split("_")[0][4:] in config.participant_label]
    workflow = init_group_wf(
        output_dir=str(output_dir),
        volumes_files=[str(p) for p in tsvs],
        predictions=predictions,
        reference_dir=str(reference) if reference else None,
        compare_dir=str(config.compare_dir) if config.compare_dir else None,
    )
    workflow.base_dir = str(config.work_dir)
    workflow.config["execution"].update({"crashdump_dir": str(run_log_dir), "crashfile_format": "txt",
                                         "check_version": "false"})
    try:
        workflow.run(plugin="Linear")
    except RuntimeError:
        crashes = sorted(run_log_dir.glob("crash-*"))
        message = _crash_message(crashes[-1].read_text(errors="replace")) if crashes else "see the logs"
        return _error(f"group level failed: {message}" + (f" (crash file: {crashes[-1]})" if crashes else ""))
    LOGGER.warning("synthseg-bids: group tables written to %s", output_dir / "group")
    return 0
