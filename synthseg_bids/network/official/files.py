"""Reading a SynthSeg ``.h5`` network into Keras 3, and exporting our own ``.npz`` U-Net as one."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...core.io import file_sha256
from ...core.labels import LabelTable
from ..keras2_h5 import OfficialModelError, read_weights, write_weights
from .architecture import (
    KINDS,
    SEGMENTATION_KINDS,
    WEIGHT_VARIABLES,
    OfficialArchitecture,
    StageArchitecture,
    expected_weights,
    infer_architecture,
)
from .building import assign_weights, build_official_model
from .tables import DK_PARCELLATION_TABLE, QC_GROUP_NAMES, official_label_table

__all__ = ["OfficialNetwork", "export_h5", "read_official"]


@dataclass
class OfficialNetwork:
    """A published SynthSeg network, ready to run.

    Attributes
    ----------
    kind : str
        'segmentation', 'robust', 'parcellation' or 'qc'.
    version : str
        '1.0', '2.0', or 'custom' (a user-trained network with its own label list).
    description : str
        E.g. "SynthSeg 2.0, robust" (for provenance).
    path : pathlib.Path
        The file (resolved).
    sha256 : str
        Hex digest of the file.
    architecture : OfficialArchitecture
        As inferred from the file.
    model : keras.Model
        See :func:`build_official_model` for inputs and outputs of each kind.
    label_table : LabelTable
        Meaning of the output channels: segmentation/robust the structures in sorted label
        order; parcellation :data:`DK_PARCELLATION_TABLE`; qc the segmentation structures the
        scores are computed from (2.0 table; :func:`qc_group_of` gives their groups), with the score
        names in :attr:`qc_names`.
    resolution_mm : float
        Voxel size (mm) of the images the network segments (1 mm for all published networks).
    qc_names : tuple of str
        QC kind only: names of the scores (:data:`QC_GROUP_NAMES`); () otherwise.

    ``network`` (the architecture; ``network.size_multiple``), ``label_table`` and ``resolution_mm``
    make an OfficialNetwork usable where inference expects a ``ModelInfo``.
    """

    kind: str
    version: str
    description: str
    path: Path
    sha256: str
    architecture: OfficialArchitecture
    model: Any
    label_table: LabelTable
    resolution_mm: float = 1.0
    qc_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def size_multiple(self) -> int:
        """Each spatial input size must be a multiple of this."""
        return self.architecture.size_multiple

    @property
    def network(self) -> OfficialArchitecture:
        """The architecture (has ``size_multiple``, like ``ModelInfo.network``)."""
        return self.architecture

    @property
    def n_labels(self) -> int:
        return len(self.label_table)


def _description(kind: str, version: str, n_outputs: int) -> str:
    if version == "custom":
        return f"SynthSeg-architecture {kind} network ({n_outputs} labels)"
    if kind == "segmentation":
        return f"SynthSeg {version}"
    return f"SynthSeg {version}, {'QC' if kind == 'qc' else kind}"


def read_official(
    path: str | os.PathLike,
    *,
    expect: str | Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
) -> OfficialNetwork:
    """Read a SynthSeg Keras 2 ``.h5`` network and build it in Keras 3.

    Parameters
    ----------
    path
        ``synthseg_2.0.h5``, ``synthseg_1.0.h5``, ``synthseg_robust_2.0.h5``,
        ``synthseg_parc_2.0.h5``, ``synthseg_qc_2.0.h5``, or a user's own SynthSeg training
        (full-model or weights-only ``.h5``).
    expect
        The kind(s) the caller accepts, e.g. ``'parcellation'``, or :data:`SEGMENTATION_KINDS`
        for "any network that segments an image"; another kind is refused.
    labels
        For a segmentation network with neither 33 (2.0) nor 32 (1.0) output channels: its
        segmentation label values (any order; channels are in sorted order). The values must be
        structures known to :class:`~synthseg_bids.core.labels.LabelTable`.

    Returns
    -------
    OfficialNetwork

    Raises
    ------
    OfficialModelError
        One line naming the file: not found, not HDF5, not a Keras network, not a SynthSeg
        network, layers missing, wrong shapes, NaN/infinite weights, an unexpected kind.
    """
    accepted = KINDS if expect is None else (expect,) if isinstance(expect, str) else tuple(expect)
    unknown = [k for k in accepted if k not in KINDS]
    if unknown:
        raise ValueError(f"expect must name kinds among {', '.join(KINDS)}, got {unknown}")
    path = Path(path).resolve()
    weights = read_weights(path)
    architecture = infer_architecture(weights, labels=labels)
    kind, version = architecture.kind, architecture.version
    if kind not in accepted:
        raise OfficialModelError(
            path, f"is a SynthSeg {kind} network, not a {' or '.join(accepted)} network as required here"
        )
    if kind in SEGMENTATION_KINDS:
        if labels is not None:
            try:
                table = LabelTable.from_values(sorted(set(int(v) for v in labels)))
            except ValueError as err:
                raise OfficialModelError(path, f"bad label list ({err})") from None
        else:
            table = official_label_table(version)
    elif kind == "parcellation":
        table = DK_PARCELLATION_TABLE
    else:
        table = official_label_table("2.0")
    model = build_official_model(architecture)
    assign_weights(model, weights)
    return OfficialNetwork(
        kind=kind,
        version=version,
        description=_description(kind, version, architecture.n_outputs),
        path=path,
        sha256=file_sha256(path),
        architecture=architecture,
        model=model,
        label_table=table,
        qc_names=QC_GROUP_NAMES if kind == "qc" else (),
    )


def _neurite_layers(model: Any, n: int, order: np.ndarray, path: Path) -> dict[str, dict[str, np.ndarray]]:
    """The weights of our ``n``-level U-Net ``model`` under neurite's layer names, output channels in ``order``."""
    layers: dict[str, dict[str, np.ndarray]] = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        values = {v.name: np.asarray(v.numpy(), dtype=np.float32) for v in layer.weights}
        kind, _, rest = layer.name.partition("_")
        if layer.name == "likelihood":
            name = "unet_likelihood"
            values = {"kernel": values["kernel"][..., order], "bias": values["bias"][order]}
        elif kind.startswith("enc") and rest.startswith("conv"):
            name = f"unet_conv_downarm_{int(kind[3:])}_{int(rest[4:])}"
        elif kind.startswith("enc") and rest == "norm":
            name = f"unet_bn_down_{int(kind[3:])}"
        elif kind.startswith("dec") and rest.startswith("conv"):
            name = f"unet_conv_uparm_{n + n - 2 - int(kind[3:])}_{int(rest[4:])}"
        elif kind.startswith("dec") and rest == "norm":
            name = f"unet_bn_up_{n - 2 - int(kind[3:])}"
        else:
            raise ValueError(f"{path}: layer {layer.name} has no counterpart in SynthSeg's U-Net")
        variables = WEIGHT_VARIABLES["bn" if "norm" in layer.name else "conv"]
        layers[name] = {v: values[v] for v in variables}
    return layers


def export_h5(model_npz_path: str | os.PathLike, out_h5_path: str | os.PathLike) -> Path:
    """Write our ``.npz`` U-Net in SynthSeg's official weights-only ``.h5`` layout, atomically.

    Layers get neurite's names (``enc{L}_conv{C}`` -> ``unet_conv_downarm_{L}_{C}``,
    ``enc{L}_norm`` -> ``unet_bn_down_{L}``, ``dec{L}_conv{C}`` ->
    ``unet_conv_uparm_{n_levels + j}_{C}`` and ``dec{L}_norm`` -> ``unet_bn_up_{j}`` with
    ``j = n_levels - 2 - L``, ``likelihood`` -> ``unet_likelihood``), and the output channels are
    permuted into sorted label order, which is the order ``mri_synthseg`` reads them in. The file
    loads with Keras 2's ``load_weights`` (by name or by order) into neurite's ``unet``;
    ``mri_synthseg`` itself builds the 24-feature, 5-level, 2-convolution, 3^3 ELU network and
    reads its label list from its own files, so it runs exported models of that architecture
    with the 33 labels of 2.0 (or the 32 of 1.0, with ``--v1``).

    Parameters
    ----------
    model_npz_path
        A model file written by :func:`~synthseg_bids.network.save_model`.
    out_h5_path
        Output ``.h5`` file (nothing is left under this name on failure).

    Raises
    ------
    ModelFileError
        Unreadable model file (names it).
    ValueError
        An architecture neurite's U-Net cannot express (normalisation other than batch, or an
        activation other than ELU, which ``mri_synthseg`` builds), or a resolution other than 1 mm
        (``mri_synthseg`` segments at 1 mm).
    """
    from ..model_file import load_model

    model_npz_path, out_h5_path = Path(model_npz_path), Path(out_h5_path)
    model, info = load_model(model_npz_path)
    settings = info.network
    if settings.normalisation != "batch":
        raise ValueError(f"{model_npz_path}: normalisation {settings.normalisation!r} cannot be exported; "
                         "SynthSeg's networks use batch normalisation")
    if settings.activation != "elu":
        raise ValueError(f"{model_npz_path}: activation {settings.activation!r} cannot be exported; "
                         "mri_synthseg builds ELU networks")
    if abs(float(info.resolution_mm) - 1.0) > 1e-6:
        raise ValueError(f"{model_npz_path}: the model works at {info.resolution_mm} mm; mri_synthseg segments at 1 mm")
    n = settings.n_levels
    order = np.argsort(info.label_table.values, kind="stable")
    layers = _neurite_layers(model, n, order, model_npz_path)
    # neurite's build order: encoder by level, decoder from the coarsest level, then likelihood
    stage = StageArchitecture(
        prefix="unet", n_levels=n, conv_per_level=settings.conv_per_level, kernel_size=settings.conv_size,
        level_features=tuple(settings.features(level) for level in range(n)),
        decoder_features=tuple(settings.features(n - 2 - j) for j in range(n - 1)),
        skip_connections=(True,) * (n - 1), input_channels=1, n_outputs=len(info.label_table),
    )
    expected = expected_weights(stage)
    actual = {name: {v: tuple(a.shape) for v, a in values.items()} for name, values in layers.items()}
    if actual != expected:
        raise ValueError(f"{model_npz_path}: the network's weights do not form SynthSeg's U-Net")
    ordered = {name: layers[name] for name in expected}
    from ... import __version__

    return write_weights(out_h5_path, ordered, attributes={"synthseg_bids_version": __version__,
                                                           "synthseg_bids_source": model_npz_path.name})
