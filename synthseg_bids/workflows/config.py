"""The BIDS-App's one explicit configuration object.

There is no global config singleton: :func:`synthseg_bids.cli.parser.parse_args` builds
one :class:`AppConfig` from the command line, :mod:`synthseg_bids.cli.run` passes it to
the ``init_*_wf`` factories, and it is saved as TOML in the work folder
(``<work_dir>/<run_uuid>/config.toml``) and next to the logs in the output folder
(``<output_dir>/logs/config-<run_uuid>.toml``), so a run can be reproduced with
``AppConfig.from_file(...)``. The model is a ``[model]`` table
(:class:`~synthseg_bids.inference.model_choice.ModelChoice`); the flat keys of release 0.1.0
(``model``, ``model_dir``, ``v1``, ``robust``, ``parc``, ``network_qc``) are still read.

Examples
--------
>>> cfg = AppConfig(bids_dir="/data", output_dir="/out", analysis_level="participant")
>>> AppConfig.from_toml(cfg.to_toml()) == cfg
True
>>> old = AppConfig.from_dict({"model": "/fs/models/synthseg_2.0.h5", "model_dir": "/fs/models", "parc": True})
>>> old.model == ModelChoice(folder="/fs/models", parcellation=True)
True
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from typing import Any

from ..core.settings import Settings, SettingsError
from ..inference.model_choice import ModelChoice

__all__ = ["ANALYSIS_LEVELS", "DEVICES", "AppConfig", "container_info"]

ANALYSIS_LEVELS = ("participant", "group")
DEVICES = ("auto", "cpu", "gpu")
#: The model keys of release 0.1.0's config.toml -> the ModelChoice field each became.
_FLAT_MODEL_KEYS = {"model_dir": "folder", "v1": "v1", "robust": "robust", "parc": "parcellation",
                    "network_qc": "network_qc"}
PLUGINS = ("Linear", "MultiProc", "SLURM", "SLURMGraph", "SGE", "SGEGraph", "PBS", "PBSGraph", "LSF", "Condor")


@dataclass(frozen=True)
class AppConfig(Settings):
    """Everything one BIDS-App run needs (see ``synthseg-bids --help``).

    Attributes
    ----------
    bids_dir, output_dir : Path
        Input BIDS dataset and the derivatives folder written.
    analysis_level : {'participant', 'group'}
    work_dir : Path, optional
        Nipype working folder (intermediate results, resumable).
    participant_label, session_label : tuple of str
        Selected subjects / sessions without ``sub-``/``ses-`` (empty: all).
    bids_filters : str
        pybids filter JSON text, ``{"<query>": {entity: value}}`` (``anat`` query
        refines the default selection of anatomical scans).
    model : ModelChoice
        The model file (default: the model shipped with the package), or the folder of
        SynthSeg's ``.h5`` networks with ``mri_synthseg``'s switches.
    device, nprocs, omp_nthreads, mem_gb
        Compute resources.
    precision : str or None
        The network's arithmetic ('auto', 'float32', 'bfloat16'; ``None``: the prediction
        settings' value).
    shifts : int or None
        Shifted windows of the test-time ensemble (``None``: the prediction settings' value).
    use_plugin : Path, optional
        Nipype plugin settings YAML (``plugin: SLURM``, ``plugin_args: {...}``).
    write_posteriors : bool
        Also write the 4D ``_probseg`` map.
    inference_settings : Path, optional
        TOML/JSON of :class:`~synthseg_bids.inference.InferenceSettings` fields (flip,
        post-processing, min_size...); ``device`` and threads come from the options above.
    skip_bids_validation : bool
    reference_dir, compare_dir : Path, optional
        Group level: reference segmentations and a second method's outputs.
    run_uuid : str
        Identifies this run (log and config names).
    """

    bids_dir: Path = Path(".")
    output_dir: Path = Path("out")
    analysis_level: str = "participant"
    work_dir: Path | None = None
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    bids_filters: str = ""
    model: ModelChoice = field(default_factory=ModelChoice)
    device: str = "auto"
    precision: str | None = None
    shifts: int | None = None
    nprocs: int = 1
    omp_nthreads: int = 0
    mem_gb: float = 0.0
    use_plugin: Path | None = None
    write_posteriors: bool = False
    inference_settings: Path | None = None
    skip_bids_validation: bool = False
    reference_dir: Path | None = None
    compare_dir: Path | None = None
    stop_on_first_crash: bool = False
    run_uuid: str = ""
    verbosity: int = 0
    container: str = field(default_factory=lambda: container_info()[0])

    def validate(self) -> None:
        if self.analysis_level not in ANALYSIS_LEVELS:
            raise SettingsError(f"analysis_level must be one of {ANALYSIS_LEVELS}, got {self.analysis_level!r}")
        if self.device not in DEVICES:
            raise SettingsError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.nprocs < 1:
            raise SettingsError(f"nprocs must be >= 1, got {self.nprocs}")
        if self.omp_nthreads < 0:
            raise SettingsError(f"omp_nthreads must be >= 0, got {self.omp_nthreads}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppConfig:
        """As :meth:`Settings.from_dict`; the flat model keys of release 0.1.0 become the ``model`` table.

        0.1.0 saved ``model`` (the file that ran: with ``model_dir``, the folder's segmentation
        network), ``model_dir``, ``v1``, ``robust``, ``parc`` and ``network_qc`` at the top level.
        """
        if not isinstance(data, dict):
            return super().from_dict(data)
        flat = {key: data[key] for key in _FLAT_MODEL_KEYS if key in data}
        if not flat and not isinstance(data.get("model"), str):
            return super().from_dict(data)
        if isinstance(data.get("model"), dict):
            raise SettingsError(f"AppConfig: give the model as a [model] table or as the flat keys "
                                f"{', '.join(flat)} (of release 0.1.0), not both")
        choice = {_FLAT_MODEL_KEYS[key]: value for key, value in flat.items()}
        if data.get("model") is not None and "folder" not in choice:
            choice["file"] = data["model"]
        rest = {key: value for key, value in data.items() if key != "model" and key not in _FLAT_MODEL_KEYS}
        return super().from_dict({**rest, "model": choice})

    @property
    def threads_per_scan(self) -> int:
        """TensorFlow threads of each segmentation (0: TensorFlow's default).

        ``--omp-nthreads`` when given; else ``nprocs`` with MultiProc (one segmentation
        at a time uses every core), and TensorFlow's default when running Linear.
        """
        if self.omp_nthreads:
            return self.omp_nthreads
        return self.nprocs if self.nprocs > 1 else 0

    def inference_overrides(self) -> dict:
        """InferenceSettings fields that differ from the defaults, without device/threads: those of
        ``inference_settings`` (checked), then ``precision`` and ``shifts`` when given."""
        from ..inference.settings import InferenceSettings

        defaults = InferenceSettings().to_dict()
        data = InferenceSettings.from_file(self.inference_settings).to_dict() if self.inference_settings else {}
        data.update({k: getattr(self, k) for k in ("precision", "shifts") if getattr(self, k) is not None})
        InferenceSettings.from_dict({**defaults, **data})  # checked together
        return {k: v for k, v in data.items() if k not in ("device", "threads") and v != defaults[k]}

    @property
    def log_dir(self) -> Path:
        return Path(self.output_dir) / "logs"


def container_info() -> tuple[str, str]:
    """``(type, tag)`` of the project's image running this process, or ``('', '')`` outside it.

    Only the project's images count: the Dockerfile and the Apptainer recipes set
    ``SYNTHSEG_BIDS_CONTAINER=<engine>-<variant>`` (``docker-cpu``, ``docker-gpu``,
    ``apptainer-cpu``, ``apptainer-gpu``); a plain install inside some other container
    (a ``/.dockerenv`` at the root, an unrelated SIF) records none. The type is the engine
    running the image, ``apptainer`` when ``APPTAINER_CONTAINER``/``SINGULARITY_CONTAINER``
    is set (a Docker image converted to a SIF), then the variant: e.g. ``apptainer-gpu``.
    The tag is the SIF path under Apptainer, else ``SYNTHSEG_BIDS_IMAGE`` when set.
    """
    declared = os.environ.get("SYNTHSEG_BIDS_CONTAINER", "")
    if not declared:
        return "", ""
    engine, _, variant = declared.partition("-")
    sif = os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER") or ""
    if sif:
        engine = "apptainer"
    return "-".join(p for p in (engine, variant) if p), sif or os.environ.get("SYNTHSEG_BIDS_IMAGE", "")
