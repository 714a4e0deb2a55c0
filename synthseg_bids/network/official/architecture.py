"""Architecture of a SynthSeg network, inferred from the names and shapes of its stored weights.

Every weight is checked (present, shape, finite); :func:`mri_synthseg_incompatibility` says whether
FreeSurfer's ``mri_synthseg`` can run a segmentation network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..keras2_h5 import H5Weights, OfficialModelError
from .tables import DK_PARCELLATION_TABLE, QC_GROUP_NAMES, official_label_table

__all__ = [
    "KINDS",
    "SEGMENTATION_KINDS",
    "WEIGHT_VARIABLES",
    "OfficialArchitecture",
    "StageArchitecture",
    "expand_needed",
    "expected_weights",
    "infer_architecture",
    "mri_synthseg_incompatibility",
]

#: The kinds of network :func:`read_official` recognises.
KINDS = ("segmentation", "robust", "parcellation", "qc")
#: Kinds that map an image ``(1, X, Y, Z, 1)`` to segmentation posteriors.
SEGMENTATION_KINDS = ("segmentation", "robust")


@dataclass(frozen=True)
class StageArchitecture:
    """One sub-network (a U-Net, or the QC encoder) as stored in a file.

    Attributes
    ----------
    prefix : str
        Layer-name prefix (``'unet'``, ``'l2l'``, ``'unet2'``, ``'unet_parc'``, ``'qc'``).
    n_levels, conv_per_level, kernel_size : int
        Resolution levels, convolutions per level, kernel size (cubic).
    level_features : tuple of int
        Feature maps of the encoder levels (full resolution first).
    decoder_features : tuple of int
        Feature maps of the decoder levels (coarsest first); empty for an encoder.
    skip_connections : tuple of bool
        Whether each decoder level (coarsest first) concatenates its encoder level.
    input_channels, n_outputs : int
        Channels of the input and of the logits (QC: of the final convolutions).
    batch_norm : bool
        A batch normalisation per level.
    residual : bool
        Residual encoder blocks (the QC network).
    activation : str
        'elu' (U-Nets) or 'relu' (QC); not stored in the weights: fixed by the kind.
    """

    prefix: str
    n_levels: int
    conv_per_level: int
    kernel_size: int
    level_features: tuple[int, ...]
    decoder_features: tuple[int, ...]
    skip_connections: tuple[bool, ...]
    input_channels: int
    n_outputs: int
    batch_norm: bool = True
    residual: bool = False
    activation: str = "elu"

    @property
    def features(self) -> int:
        """Feature maps at full resolution."""
        return self.level_features[0]


def _of_stage(name: str, index: int = 0) -> property:
    """A read-only :class:`OfficialArchitecture` attribute taken from one of its stages (the first by default)."""
    return property(lambda self: getattr(self.stages[index], name), doc=f"``stages[{index}].{name}``.")


@dataclass(frozen=True)
class OfficialArchitecture:
    """The architecture of a published (or user-trained) SynthSeg network, inferred from its file.

    ``n_levels`` ... ``input_channels`` describe the first stage, ``n_outputs`` the last one; the
    cascades (robust: ``unet``, ``l2l``, ``unet2``) have one :class:`StageArchitecture` per stage.
    """

    kind: str
    version: str
    stages: tuple[StageArchitecture, ...]

    n_levels = _of_stage("n_levels")
    conv_per_level = _of_stage("conv_per_level")
    features = _of_stage("features")
    kernel_size = _of_stage("kernel_size")
    input_channels = _of_stage("input_channels")
    n_outputs = _of_stage("n_outputs", -1)

    @property
    def size_multiple(self) -> int:
        """Each spatial input size must be a multiple of this: ``2 ** (n_levels - 1)``, the QC
        network ``2 ** n_levels`` (one more pooling)."""
        exponents = [s.n_levels if s.residual else s.n_levels - 1 for s in self.stages]
        return 2 ** max(exponents)

    def stage(self, prefix: str) -> StageArchitecture:
        for stage in self.stages:
            if stage.prefix == prefix:
                return stage
        raise KeyError(prefix)


_DOWN = re.compile(r"^(?P<prefix>.+)_conv_downarm_(?P<level>\d+)_(?P<conv>\d+)$")
WEIGHT_VARIABLES = {"conv": ("kernel", "bias"), "bn": ("gamma", "beta", "moving_mean", "moving_variance")}


def _kernel(weights: H5Weights, layer: str) -> tuple[int, ...] | None:
    variables = weights.layers.get(layer)
    if variables is None or "kernel" not in variables:
        return None
    shape = tuple(variables["kernel"].shape)
    if len(shape) != 5:
        raise OfficialModelError(weights.path, f"weight {layer}/kernel has shape {shape}, not a 3D convolution's")
    return shape


def _infer_stage(weights: H5Weights, prefix: str, *, residual: bool, activation: str) -> StageArchitecture:
    path = weights.path
    down = {}
    for name in weights.layers:
        match = _DOWN.match(name)
        if match and match["prefix"] == prefix:
            down[(int(match["level"]), int(match["conv"]))] = name
    first = _kernel(weights, f"{prefix}_conv_downarm_0_0")
    if first is None:
        raise OfficialModelError(path, f"layer {prefix}_conv_downarm_0_0 is missing")
    if len(first) != 5 or not first[0] == first[1] == first[2]:
        raise OfficialModelError(
            path, f"layer {prefix}_conv_downarm_0_0 has kernel shape {first}, not a cubic 3D kernel"
        )
    n_levels = max(level for level, _ in down) + 1
    conv_per_level = max(conv for level, conv in down if level == 0) + 1
    kernel_size, input_channels = first[0], first[3]
    level_features = []
    for level in range(n_levels):
        shape = _kernel(weights, f"{prefix}_conv_downarm_{level}_0")
        if shape is None:
            raise OfficialModelError(path, f"layer {prefix}_conv_downarm_{level}_0 is missing")
        level_features.append(int(shape[-1]))
    decoder_features, skips = [], []
    n_outputs = 0
    if not residual:
        previous = level_features[-1]
        for j in range(n_levels - 1):
            name = f"{prefix}_conv_uparm_{n_levels + j}_0"
            shape = _kernel(weights, name)
            if shape is None:
                raise OfficialModelError(path, f"layer {name} is missing")
            skip_features = level_features[n_levels - 2 - j]
            if shape[3] == previous + skip_features:
                skips.append(True)
            elif shape[3] == previous:
                skips.append(False)
            else:
                raise OfficialModelError(
                    path,
                    f"layer {name} has {shape[3]} input channels; expected {previous + skip_features} "
                    f"(with skip connection) or {previous}",
                )
            decoder_features.append(int(shape[-1]))
            previous = int(shape[-1])
        shape = _kernel(weights, f"{prefix}_likelihood")
        if shape is None:
            raise OfficialModelError(path, f"layer {prefix}_likelihood is missing")
        n_outputs = int(shape[-1])
    else:
        shape = _kernel(weights, f"{prefix}_final_conv_1")
        if shape is None:
            raise OfficialModelError(path, f"layer {prefix}_final_conv_1 is missing")
        n_outputs = int(shape[-1])
    return StageArchitecture(
        prefix=prefix,
        n_levels=n_levels,
        conv_per_level=conv_per_level,
        kernel_size=int(kernel_size),
        level_features=tuple(level_features),
        decoder_features=tuple(decoder_features),
        skip_connections=tuple(skips),
        input_channels=int(input_channels),
        n_outputs=n_outputs,
        batch_norm=f"{prefix}_bn_down_0" in weights.layers,
        residual=residual,
        activation=activation,
    )


def expand_needed(channels_in: int, channels_out: int) -> bool:
    """Whether a residual level projects its input (neurite: only when both sides have > 1 channel and differ)."""
    return channels_in > 1 and channels_out > 1 and channels_in != channels_out


def expected_weights(stage: StageArchitecture) -> dict[str, dict[str, tuple[int, ...]]]:
    """``{layer: {variable: shape}}`` of every weighted layer of ``stage``, in build order."""
    p, k = stage.prefix, stage.kernel_size
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}

    def conv(name, cin, cout, size=k):
        shapes[name] = {"kernel": (size, size, size, cin, cout), "bias": (cout,)}

    def bn(name, channels):
        if stage.batch_norm:
            shapes[name] = {v: (channels,) for v in WEIGHT_VARIABLES["bn"]}

    channels = stage.input_channels
    for level, features in enumerate(stage.level_features):
        level_in = channels
        for c in range(stage.conv_per_level):
            conv(f"{p}_conv_downarm_{level}_{c}", channels, features)
            channels = features
        if stage.residual and expand_needed(level_in, features):
            conv(f"{p}_expand_down_merge_{level}", level_in, features)
        bn(f"{p}_bn_down_{level}", features)
    if stage.residual:
        conv(f"{p}_final_conv_0", channels, stage.n_outputs)
        conv(f"{p}_final_conv_1", stage.n_outputs, stage.n_outputs)
        return shapes
    for j, features in enumerate(stage.decoder_features):
        skip = stage.level_features[stage.n_levels - 2 - j] if stage.skip_connections[j] else 0
        for c in range(stage.conv_per_level):
            conv(f"{p}_conv_uparm_{stage.n_levels + j}_{c}", channels + skip if c == 0 else channels, features)
            channels = features
        bn(f"{p}_bn_up_{j}", features)
    conv(f"{p}_likelihood", channels, stage.n_outputs, size=1)
    return shapes


def _check_stage(weights: H5Weights, stage: StageArchitecture) -> None:
    path = weights.path
    expected = expected_weights(stage)
    missing = [name for name in expected if name not in weights.layers]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise OfficialModelError(path, f"layers missing: {', '.join(missing[:3])}{more}")
    for name, variables in expected.items():
        stored = weights.layers[name]
        for variable, shape in variables.items():
            if variable not in stored:
                raise OfficialModelError(path, f"weight {name}/{variable} is missing")
            if tuple(stored[variable].shape) != shape:
                raise OfficialModelError(
                    path, f"weight {name}/{variable} has shape {tuple(stored[variable].shape)}, expected {shape}"
                )
            if not np.all(np.isfinite(stored[variable])):
                raise OfficialModelError(path, f"weight {name}/{variable} has NaN or infinite values")
    # a layer of this stage beyond the inferred architecture means an inconsistent file
    pattern = re.compile(rf"^{re.escape(stage.prefix)}_(conv_downarm|conv_uparm|bn_down|bn_up|expand_down_merge)_")
    extra = [name for name in weights.layers if pattern.match(name) and name not in expected]
    if extra:
        raise OfficialModelError(path, f"unexpected layers for the inferred architecture: {', '.join(extra[:3])}")


def infer_architecture(weights: H5Weights, *, labels: Sequence[int] | None = None) -> OfficialArchitecture:
    """Recognise the network in ``weights`` and infer its architecture; check every weight.

    Parameters
    ----------
    weights
        From :func:`~synthseg_bids.network.keras2_h5.read_weights`.
    labels
        Segmentation label values of a user-trained network with another label set (only used to
        name the version; see :func:`read_official`).

    Raises
    ------
    OfficialModelError
        Not a SynthSeg network, layers missing, unexpected or wrong shapes, NaN or infinite weights.
    """
    path = weights.path
    prefixes = sorted({m["prefix"] for m in map(_DOWN.match, weights.layers) if m and m["level"] == "0"})
    if not prefixes:
        raise OfficialModelError(path, "holds Keras weights but no SynthSeg network (no layer *_conv_downarm_0_0)")
    found = set(prefixes)
    if found == {"unet", "l2l", "unet2"}:
        kind = "robust"
        stages = tuple(_infer_stage(weights, p, residual=False, activation="elu") for p in ("unet", "l2l", "unet2"))
    elif found == {"unet"}:
        kind = "segmentation"
        stages = (_infer_stage(weights, "unet", residual=False, activation="elu"),)
    elif found == {"unet_parc"}:
        kind = "parcellation"
        stages = (_infer_stage(weights, "unet_parc", residual=False, activation="elu"),)
    elif found == {"qc"}:
        kind = "qc"
        stages = (_infer_stage(weights, "qc", residual=True, activation="relu"),)
    else:
        raise OfficialModelError(
            path, f"has networks {', '.join(prefixes)}, which is none of SynthSeg's segmentation, robust, "
            "parcellation or QC networks"
        )
    for stage in stages:
        _check_stage(weights, stage)
    if kind == "robust":
        first, denoiser, second = stages
        if denoiser.input_channels != first.n_outputs or second.input_channels != 1 + denoiser.n_outputs:
            raise OfficialModelError(
                path, f"robust cascade stages do not fit: unet gives {first.n_outputs} channels, l2l takes "
                f"{denoiser.input_channels} and gives {denoiser.n_outputs}, unet2 takes {second.input_channels}"
            )
    if kind in SEGMENTATION_KINDS and stages[0].input_channels != 1:
        raise OfficialModelError(
            path, f"the segmentation network takes {stages[0].input_channels} input channels, not 1"
        )
    if kind == "parcellation" and stages[0].input_channels != 3:
        raise OfficialModelError(path, f"the parcellation network takes {stages[0].input_channels} input channels, "
                                 "not 3 (image + one-hot cortex mask)")
    if kind == "qc" and stages[0].input_channels != stages[0].n_outputs:
        raise OfficialModelError(path, f"the QC network takes {stages[0].input_channels} channels but gives "
                                 f"{stages[0].n_outputs}")
    return OfficialArchitecture(kind=kind, version=_version(kind, stages[-1].n_outputs, labels, path), stages=stages)


def _version(kind: str, n_outputs: int, labels: Sequence[int] | None, path: Path) -> str:
    if labels is not None and kind not in SEGMENTATION_KINDS:
        raise OfficialModelError(path, f"is a {kind} network; a label list applies to segmentation networks only")
    if labels is not None:
        values = sorted(set(int(v) for v in labels))
        if len(values) != n_outputs:
            raise OfficialModelError(path, f"has {n_outputs} output channels but {len(values)} labels were given")
        for version in ("2.0", "1.0"):
            if values == official_label_table(version).values.tolist():
                return version
        return "custom"
    if kind == "segmentation":
        if n_outputs == 33:
            return "2.0"
        if n_outputs == 32:
            return "1.0"
        raise OfficialModelError(
            path, f"segments {n_outputs} labels, not SynthSeg 2.0's 33 or 1.0's 32: give its label list"
        )
    expected = {"robust": 33, "parcellation": len(DK_PARCELLATION_TABLE), "qc": len(QC_GROUP_NAMES) + 1}[kind]
    if n_outputs != expected:
        raise OfficialModelError(path, f"the {kind} network gives {n_outputs} channels, expected {expected}")
    return "2.0"


def mri_synthseg_incompatibility(architecture: OfficialArchitecture) -> str | None:
    """Why FreeSurfer's ``mri_synthseg`` cannot run this segmentation network (None if it can).

    ``mri_synthseg`` (7.3.2) builds neurite's U-Net with fixed hyper-parameters: 5 levels,
    2 convolutions per level, 3^3 kernels, 24 base features doubling per level, one input channel,
    skip connections everywhere; and 33 labels (2.0) or 32 (1.0, ``--v1``) from its own label lists.
    """
    if architecture.kind != "segmentation":
        return f"this is a {architecture.kind} network; mri_synthseg's --model slot is a segmentation network"
    stage = architecture.stages[0]
    for what, wanted, actual in (
        ("levels", 5, stage.n_levels),
        ("convolutions per level", 2, stage.conv_per_level),
        ("kernel size", 3, stage.kernel_size),
        ("base features", 24, stage.features),
        ("input channels", 1, stage.input_channels),
    ):
        if actual != wanted:
            return f"mri_synthseg builds {wanted} {what}, this network has {actual}"
    if stage.level_features != tuple(24 * 2**level for level in range(5)):
        return f"mri_synthseg doubles the features at each level, this network has {list(stage.level_features)}"
    if not all(stage.skip_connections):
        return "mri_synthseg's U-Net has a skip connection at every level"
    if architecture.version not in ("1.0", "2.0"):
        return f"mri_synthseg segments the 33 labels of 2.0 or the 32 of 1.0, this network {stage.n_outputs}"
    return None
