"""The model a segmentation runs with: one choice, checked once, passed along unchanged.

A :class:`ModelChoice` is either a model file (one of our ``.npz`` models, or one of SynthSeg's
published Keras 2 ``.h5`` segmentation networks; ``None``: the model shipped with the package)
or a folder laid out like FreeSurfer's ``$FREESURFER_HOME/models``, from which the switches
``v1``, ``robust``, ``parcellation`` and ``network_qc`` pick files as ``mri_synthseg`` does
(:data:`MODEL_FILES`). The command lines build it once from ``--model``, ``--model-dir``,
``--v1``, ``--robust``, ``--parc`` and ``--qc``; the BIDS-App's
:class:`~synthseg_bids.workflows.config.AppConfig` holds it (a ``[model]`` table of
``config.toml``), :func:`~synthseg_bids.workflows.segmentation.init_segmentation_wf` takes it and
the ``SynthSeg`` interface receives it as one input (:meth:`ModelChoice.to_dict`).

Creating one checks that the switches can be combined (:class:`ModelSelectionError`);
:meth:`ModelChoice.files` finds its files (:class:`~synthseg_bids.network.ModelFileError`
naming a missing one); :meth:`ModelChoice.identity` hashes them without building any network;
:meth:`ModelChoice.load` builds the segmenter.

Examples
--------
>>> ModelChoice(folder="/opt/fs/models", robust=True, parcellation=True).to_dict()["parcellation"]
True
>>> ModelChoice(v1=True, robust=True)
Traceback (most recent call last):
...
synthseg_bids.inference.model_choice.ModelSelectionError: --v1 cannot be used with --robust: SynthSeg-robust only exists in version 2.0 (drop --v1)
>>> ModelChoice(file="model.npz", parcellation=True)
Traceback (most recent call last):
...
synthseg_bids.inference.model_choice.ModelSelectionError: --parc select(s) SynthSeg's published networks in a model folder: add --model-dir DIR (e.g. --model-dir $FREESURFER_HOME/models)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.settings import Settings

if TYPE_CHECKING:
    from ..core.labels import LabelTable
    from .settings import InferenceSettings

__all__ = [
    "MODEL_FILES",
    "SWITCH_FLAGS",
    "ModelChoice",
    "ModelFiles",
    "ModelIdentity",
    "ModelSelectionError",
    "is_official_model",
]

#: File names in ``$FREESURFER_HOME/models`` (FreeSurfer 7.3) by role.
MODEL_FILES: dict[str, str] = {
    "1.0": "synthseg_1.0.h5",
    "2.0": "synthseg_2.0.h5",
    "robust": "synthseg_robust_2.0.h5",
    "parcellation": "synthseg_parc_2.0.h5",
    "qc": "synthseg_qc_2.0.h5",
}
#: The switches that pick files in a model folder, and their command-line flags (for messages).
SWITCH_FLAGS: dict[str, str] = {"v1": "--v1", "robust": "--robust", "parcellation": "--parc", "network_qc": "--qc"}


class ModelSelectionError(ValueError):
    """Options that cannot be combined (e.g. ``--v1`` with ``--robust``): a usage error."""


def is_official_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is to be read as a Keras 2 ``.h5`` network (by suffix or content)."""
    from ..network.official import is_keras2_h5

    path = Path(path)
    return path.suffix.lower() in (".h5", ".hdf5") or is_keras2_h5(path)


@dataclass(frozen=True)
class ModelFiles:
    """The network files of a model choice (resolved paths).

    Attributes
    ----------
    segmentation : Path
        Our ``.npz`` model, or SynthSeg's 1.0, 2.0 or robust 2.0 segmentation network.
    parcellation, qc : Path or None
        SynthSeg's parcellation and QC networks, when chosen.
    official : bool
        Whether these are SynthSeg's published ``.h5`` networks (run by
        :class:`~synthseg_bids.inference.official.OfficialSegmenter`).
    """

    segmentation: Path
    parcellation: Path | None = None
    qc: Path | None = None
    official: bool = False

    def by_role(self) -> dict[str, Path]:
        """Role ('segmentation', 'parcellation', 'qc') -> path, for the files chosen."""
        roles = {"segmentation": self.segmentation, "parcellation": self.parcellation, "qc": self.qc}
        return {role: path for role, path in roles.items() if path is not None}


@dataclass(frozen=True)
class ModelIdentity:
    """What identifies a model choice (the BIDS-App's ``dseg.tsv``, done-checks and sidecars).

    Attributes
    ----------
    label_table : LabelTable
        The segmentation's labels.
    sha256 : str
        One file: its sha256; several (a model folder with ``parcellation`` or ``network_qc``):
        the sha256 of the lines ``<file name> <sha256>`` of every file, so that adding or
        dropping a network changes it.
    files : tuple of (str, Path, str)
        Role, path and sha256 of every file.
    """

    label_table: LabelTable
    sha256: str
    files: tuple[tuple[str, Path, str], ...]


@dataclass(frozen=True)
class ModelChoice(Settings):
    """A model file, or a folder of SynthSeg's networks with ``mri_synthseg``'s switches.

    Attributes
    ----------
    file : Path or None
        Model file: ``.npz`` (ours) or a SynthSeg Keras 2 ``.h5`` segmentation network
        (``--model``). ``None`` (and no ``folder``): the model shipped with the package.
    folder : Path or None
        Folder of SynthSeg's ``.h5`` networks, like ``$FREESURFER_HOME/models`` (``--model-dir``).
    v1, robust : bool
        With ``folder``: ``synthseg_1.0.h5`` or ``synthseg_robust_2.0.h5`` instead of
        ``synthseg_2.0.h5`` (``--v1``, ``--robust``; not both).
    parcellation : bool
        With ``folder``: also ``synthseg_parc_2.0.h5``, the Desikan-Killiany parcellation of the
        cortex (``--parc``).
    network_qc : bool
        With ``folder``: also ``synthseg_qc_2.0.h5``, SynthSeg's QC network (``--qc``).

    Raises
    ------
    ModelSelectionError
        ``file`` with ``folder``, ``v1`` with ``robust``, a switch without ``folder``.
    """

    file: Path | None = None
    folder: Path | None = None
    v1: bool = False
    robust: bool = False
    parcellation: bool = False
    network_qc: bool = False

    def validate(self) -> None:
        if self.file is not None and self.folder is not None:
            raise ModelSelectionError("give either --model FILE or --model-dir DIR, not both")
        if self.v1 and self.robust:
            raise ModelSelectionError(
                "--v1 cannot be used with --robust: SynthSeg-robust only exists in version 2.0 (drop --v1)"
            )
        given = [flag for name, flag in SWITCH_FLAGS.items() if getattr(self, name)]
        if given and self.folder is None:
            raise ModelSelectionError(
                f"{', '.join(given)} select(s) SynthSeg's published networks in a model folder: add --model-dir "
                "DIR (e.g. --model-dir $FREESURFER_HOME/models)"
            )

    def files(self) -> ModelFiles:
        """The files of this choice: those ``mri_synthseg`` would pick in ``folder``, ``file``, or
        the shipped model.

        Raises
        ------
        synthseg_bids.network.ModelFileError
            A missing model file, folder or network of the folder, or no shipped model installed.
        """
        from ..network import ModelFileError

        if self.folder is not None:
            return self._folder_files()
        if self.file is not None:
            if not self.file.is_file():
                raise ModelFileError(self.file, "model file not found")
            return ModelFiles(self.file.resolve(), official=is_official_model(self.file))
        from .runtime import default_model_path

        path = default_model_path()
        if not path.is_file():
            raise ModelFileError(path, "the default model is not installed with this package; give a model file "
                                 "(--model)")
        return ModelFiles(path.resolve())

    def _folder_files(self) -> ModelFiles:
        from ..network import ModelFileError

        folder = self.folder
        if not folder.is_dir():
            raise ModelFileError(folder, "model folder not found (expected a folder like $FREESURFER_HOME/models)")
        roles = ["robust" if self.robust else "1.0" if self.v1 else "2.0"]
        roles += [role for role, on in (("parcellation", self.parcellation), ("qc", self.network_qc)) if on]
        paths = {role: (folder / MODEL_FILES[role]).resolve() for role in roles}
        for role, path in paths.items():
            if not path.is_file():
                raise ModelFileError(folder / MODEL_FILES[role],
                                     f"not found: the {role} network {MODEL_FILES[role]} is not in {folder}")
        return ModelFiles(paths[roles[0]], paths.get("parcellation"), paths.get("qc"), official=True)

    def resolved(self) -> ModelChoice:
        """This choice with absolute paths, the shipped model named by its path (what a run records,
        and what Nipype nodes receive: they run in folders of their own).

        Raises
        ------
        synthseg_bids.network.ModelFileError
            As :meth:`files`.
        """
        files = self.files()
        if self.folder is not None:
            return self.replace(folder=self.folder.resolve())
        return self.replace(file=files.segmentation)

    def identity(self) -> ModelIdentity:
        """The segmentation's label table and the sha256s of the files, without building any network.

        Raises
        ------
        synthseg_bids.network.ModelFileError
            As :meth:`files`, or an unreadable model file.
        """
        from ..core.io import file_sha256

        files = self.files()
        if files.official:
            from ..network.keras2_h5 import read_weights
            from ..network.official import infer_architecture, official_label_table

            table = official_label_table(infer_architecture(read_weights(files.segmentation)).version)
        else:
            from ..network import read_model_file

            table = read_model_file(files.segmentation).info.label_table
        digests = tuple((role, path, file_sha256(path)) for role, path in files.by_role().items())
        if len(digests) == 1:
            return ModelIdentity(table, digests[0][2], digests)
        lines = "".join(f"{path.name} {sha}\n" for _, path, sha in digests)
        return ModelIdentity(table, hashlib.sha256(lines.encode()).hexdigest(), digests)

    def load(self, settings: InferenceSettings | None = None, *, shared: bool = False) -> Any:
        """The segmenter of this choice: an :class:`~synthseg_bids.inference.Segmenter` for our
        models, an :class:`~synthseg_bids.inference.official.OfficialSegmenter` for SynthSeg's.

        Parameters
        ----------
        settings : InferenceSettings, optional
            How scans are segmented (default: :class:`~synthseg_bids.inference.InferenceSettings`).
        shared : bool
            Take it from the process-wide caches (:func:`~synthseg_bids.inference.cached_segmenter`,
            :func:`~synthseg_bids.inference.official.cached_official_segmenter`), keyed by the
            files, their modification times and the settings, so that the nodes of a workflow
            that run in one process load the networks once.

        Raises
        ------
        synthseg_bids.network.ModelFileError
            As :meth:`files`, or a file that is not a model of its kind.
        """
        files = self.files()
        if files.official:
            from .official import OfficialSegmenter, cached_official_segmenter

            if shared:
                return cached_official_segmenter(files, settings)
            return OfficialSegmenter(files.segmentation, parcellation=files.parcellation, qc=files.qc,
                                     settings=settings)
        from .segmenter import Segmenter, cached_segmenter

        return cached_segmenter(files.segmentation, settings) if shared else Segmenter(files.segmentation, settings)
