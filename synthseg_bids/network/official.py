"""SynthSeg's published networks (FreeSurfer's ``$FREESURFER_HOME/models/*.h5``) in Keras 3.

FreeSurfer 7.3+ installs five Keras 2 networks, each a plain ``.h5`` weights file:

==========================  ==============  ==========================================================
file                        kind            network
==========================  ==============  ==========================================================
``synthseg_1.0.h5``         segmentation    one U-Net (``unet_*`` layers), 32 labels (no CSF)
``synthseg_2.0.h5``         segmentation    one U-Net, 33 labels (CSF, label 24, included)
``synthseg_robust_2.0.h5``  robust          cascade ``unet`` -> argmax/one-hot -> ``l2l`` (denoiser) ->
                                            argmax/one-hot, with the image -> ``unet2``, 33 labels
``synthseg_parc_2.0.h5``    parcellation    ``unet_parc`` on the image and a one-hot cortex mask,
                                            69 outputs (background + 68 Desikan-Killiany parcels)
``synthseg_qc_2.0.h5``      qc              ``qc`` residual encoder (ReLU, 5^3 kernels) on one-hot
                                            structure groups, 9 channels averaged -> 8 scores
==========================  ==============  ==========================================================

:func:`read_official` reads one such file (:mod:`.keras2_h5`: h5py only, arrays by layer name, the
stored architecture JSON is never read), infers the architecture from the weight names and shapes
(levels, convolutions per level, features of every level, kernel size, input channels, outputs,
skip connections: users' own SynthSeg trainings differ from the published 24-feature networks),
checks every weight (present, shape, finite), and builds the network in Keras 3 with the layer names
of neurite / FreeSurfer (``unet_conv_downarm_L_C``, ``unet_bn_down_L``, ``unet_conv_uparm_L_C``,
``unet_bn_up_L``, ``unet_likelihood``, ``unet_prediction``; the same with ``l2l``, ``unet2``,
``unet_parc``; ``qc_conv_downarm_L_C``, ``qc_expand_down_merge_L``, ``qc_final_conv_0/1``,
``qc_final_pred``).

The U-Net (neurite's ``unet`` as FreeSurfer's ``mri_synthseg`` builds it): encoder level ``L`` has
``C`` 'same' convolutions with ELU, then batch normalisation, then 2x2x2 max-pooling ('same');
decoder level ``j`` (``j = 0`` coarsest; its layers are numbered ``n_levels + j``) upsamples 2x
(nearest), concatenates ``[last encoder convolution of that level (before its normalisation),
upsampled]`` (the denoiser ``l2l`` skips this at its two finest levels), has ``C`` convolutions and
a batch normalisation (``unet_bn_up_j``); a 1x1x1 convolution gives the logits (``likelihood``) and a
softmax the posteriors (``prediction``). Output channels are in sorted label order
(``np.unique`` of the label list), as ``mri_synthseg`` uses them.

:func:`export_h5` writes one of our own ``.npz`` U-Nets in the official weights-only layout with
these names and the channels in sorted label order, so that ``mri_synthseg`` (which builds the
24-feature, 5-level, 2-convolution, 3^3-kernel ELU network and calls ``load_weights``) runs it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.labels import LabelTable, Structure, default_label_table
from .keras2_h5 import H5Weights, OfficialModelError, is_keras2_h5, read_weights, write_weights

__all__ = [
    "DK_PARCELLATION_TABLE",
    "KINDS",
    "QC_CROP_SIZE",
    "QC_GROUP_NAMES",
    "SEGMENTATION_KINDS",
    "OfficialArchitecture",
    "OfficialModelError",
    "OfficialNetwork",
    "StageArchitecture",
    "build_official_model",
    "expected_weights",
    "export_h5",
    "infer_architecture",
    "is_keras2_h5",
    "mri_synthseg_incompatibility",
    "official_label_table",
    "qc_group_of",
    "qc_network_input",
    "read_official",
]

#: The kinds of network :func:`read_official` recognises.
KINDS = ("segmentation", "robust", "parcellation", "qc")
#: Kinds that map an image ``(1, X, Y, Z, 1)`` to segmentation posteriors.
SEGMENTATION_KINDS = ("segmentation", "robust")

# --------------------------------------------------------------------------------------------------
# Label tables of the published networks (data: FreeSurfer's FreeSurferColorLUT.txt and SynthSeg's
# label lists).
# --------------------------------------------------------------------------------------------------

#: Desikan-Killiany parcels segmented by ``synthseg_parc_2.0.h5`` (FreeSurfer's ``aparc`` names
#: without the ``ctx-lh-`` prefix, LUT colours); values ``1000 + i`` (left) and ``2000 + i`` (right).
_DK_PARCELS = (
    (1, "bankssts", (25, 100, 40)),
    (2, "caudalanteriorcingulate", (125, 100, 160)),
    (3, "caudalmiddlefrontal", (100, 25, 0)),
    (5, "cuneus", (220, 20, 100)),
    (6, "entorhinal", (220, 20, 10)),
    (7, "fusiform", (180, 220, 140)),
    (8, "inferiorparietal", (220, 60, 220)),
    (9, "inferiortemporal", (180, 40, 120)),
    (10, "isthmuscingulate", (140, 20, 140)),
    (11, "lateraloccipital", (20, 30, 140)),
    (12, "lateralorbitofrontal", (35, 75, 50)),
    (13, "lingual", (225, 140, 140)),
    (14, "medialorbitofrontal", (200, 35, 75)),
    (15, "middletemporal", (160, 100, 50)),
    (16, "parahippocampal", (20, 220, 60)),
    (17, "paracentral", (60, 220, 60)),
    (18, "parsopercularis", (220, 180, 140)),
    (19, "parsorbitalis", (20, 100, 50)),
    (20, "parstriangularis", (220, 60, 20)),
    (21, "pericalcarine", (120, 100, 60)),
    (22, "postcentral", (220, 20, 20)),
    (23, "posteriorcingulate", (220, 180, 220)),
    (24, "precentral", (60, 20, 220)),
    (25, "precuneus", (160, 140, 180)),
    (26, "rostralanteriorcingulate", (80, 20, 140)),
    (27, "rostralmiddlefrontal", (75, 50, 125)),
    (28, "superiorfrontal", (20, 220, 160)),
    (29, "superiorparietal", (20, 180, 140)),
    (30, "superiortemporal", (140, 220, 220)),
    (31, "supramarginal", (80, 160, 20)),
    (32, "frontalpole", (100, 0, 100)),
    (33, "temporalpole", (70, 20, 170)),
    (34, "transversetemporal", (150, 150, 200)),
    (35, "insula", (255, 192, 32)),
)


def _dk_table() -> LabelTable:
    background = default_label_table().structures[0]
    left = [Structure(1000 + i, f"ctx-lh-{name}", f"Lctx{name}", color, 2000 + i, 0) for i, name, color in _DK_PARCELS]
    right = [Structure(2000 + i, f"ctx-rh-{name}", f"Rctx{name}", color, 1000 + i, 0) for i, name, color in _DK_PARCELS]
    return LabelTable([background, *left, *right])


#: Output channels of the parcellation network: background, then the 34 left and 34 right
#: Desikan-Killiany parcels in increasing value (1001-1035, 2001-2035, without 1004/2004).
DK_PARCELLATION_TABLE = _dk_table()

#: Names of the 8 scores of the QC network (its channels 1..8; channel 0 is the background).
QC_GROUP_NAMES = (
    "general white matter",
    "general grey matter",
    "general csf",
    "cerebellum",
    "brainstem",
    "thalamus",
    "putamen+pallidum",
    "hippocampus+amygdala",
)

#: QC group (0 = background, 1..8 = :data:`QC_GROUP_NAMES`) of each segmentation label, as in
#: SynthSeg's ``synthseg_qc_labels_2.0.npy`` (CSF, 24, counts as background).
_QC_GROUP = {
    0: 0, 24: 0,
    2: 1, 41: 1, 11: 1, 50: 1, 26: 1, 58: 1, 28: 1, 60: 1,
    3: 2, 42: 2,
    4: 3, 43: 3, 5: 3, 44: 3, 14: 3, 15: 3,
    7: 4, 46: 4, 8: 4, 47: 4,
    16: 5,
    10: 6, 49: 6,
    12: 7, 51: 7, 13: 7, 52: 7,
    17: 8, 53: 8, 18: 8, 54: 8,
}


def qc_group_of(values: Sequence[int] | np.ndarray) -> np.ndarray:
    """QC group (0..8) of each segmentation label value (vectorised; raises on unknown values)."""
    values = np.asarray(values)
    lut = np.full(max(_QC_GROUP) + 1, -1, dtype=np.int32)
    for value, group in _QC_GROUP.items():
        lut[value] = group
    if values.size and (values.min() < 0 or values.max() >= lut.size or np.any(lut[values] < 0)):
        bad = sorted(set(np.unique(values).tolist()) - set(_QC_GROUP))
        raise ValueError(f"label values without a QC group: {bad}")
    return lut[values]


#: Side of the cube the QC network sees in ``mri_synthseg`` (voxels, 1 mm).
QC_CROP_SIZE = 224


def qc_network_input(channels: np.ndarray, label_values: Sequence[int], *, size: int = QC_CROP_SIZE) -> np.ndarray:
    """The QC network's input from a hard segmentation, as ``mri_synthseg`` 7.3.2 prepares it.

    The segmentation (channel indices of the segmentation network, on its padded 1 mm grid) is cut
    to a ``size``\\ :sup:`3` cube centred on the bounding box of its foreground (zero-padded where
    the cube leaves the volume; the whole volume's corner when there is no foreground), its labels
    are replaced by their QC groups (:func:`qc_group_of`) and one-hot encoded.

    The foreground is what FreeSurfer's ``MakeShape`` layer uses: channel index neither 0 nor 24.
    (With the sorted 2.0 labels, channel 24 is label 47, the right cerebellum cortex; the code
    probably meant CSF, label 24, but the channel index is what it compares, and parity with
    ``mri_synthseg`` needs the same.)

    Parameters
    ----------
    channels
        (X, Y, Z) integer channel indices (argmax of the posteriors).
    label_values
        Label value of each channel (the network's sorted label list).
    size
        Side of the cube.

    Returns
    -------
    numpy.ndarray
        (1, size, size, size, 9) float32 one-hot QC groups.
    """
    channels = np.asarray(channels)
    if channels.ndim != 3:
        raise ValueError(f"channels must be a 3D array, got shape {channels.shape}")
    shape = np.array(channels.shape)
    foreground = np.argwhere((channels != 0) & (channels != 24))
    if len(foreground):
        low = foreground.min(axis=0)
        high = np.minimum(foreground.max(axis=0) + 1, shape)
    else:
        low = np.zeros(3, dtype=int)
        high = np.minimum(shape, size)
    extent = high - low
    low = low - np.ceil((size - extent) / 2).astype(int)
    high = high + np.floor((size - extent) / 2).astype(int)
    start, stop = np.maximum(low, 0), np.minimum(high, shape)
    crop = channels[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
    padding = [(int(a), int(b)) for a, b in zip(np.maximum(-low, 0), np.maximum(high - shape, 0))]
    crop = np.pad(crop, padding)
    groups = qc_group_of(np.asarray(label_values)[crop])
    one_hot = np.zeros((1, *groups.shape, len(QC_GROUP_NAMES) + 1), dtype=np.float32)
    np.put_along_axis(one_hot[0], groups[..., None], 1.0, axis=-1)
    return one_hot


def official_label_table(version: str) -> LabelTable:
    """Output channels of the published segmentation networks, in sorted label order.

    ``'2.0'``: the 33 structures of :func:`~synthseg_bids.core.labels.default_label_table` (CSF
    included); ``'1.0'``: the same without CSF (32). (Our own models keep their own channel order,
    which differs: the shipped model puts CSF after the accumbens.)
    """
    values = sorted(int(v) for v in default_label_table().values)
    if version == "2.0":
        return LabelTable.from_values(values)
    if version == "1.0":
        return LabelTable.from_values([v for v in values if v != 24])
    raise ValueError(f"version must be '1.0' or '2.0', got {version!r}")


# --------------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------------


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
_WEIGHT_VARIABLES = {"conv": ("kernel", "bias"), "bn": ("gamma", "beta", "moving_mean", "moving_variance")}


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


def _expand_needed(channels_in: int, channels_out: int) -> bool:
    # neurite's residual blocks project the level's input only when both sides have > 1 channel
    return channels_in > 1 and channels_out > 1 and channels_in != channels_out


def expected_weights(stage: StageArchitecture) -> dict[str, dict[str, tuple[int, ...]]]:
    """``{layer: {variable: shape}}`` of every weighted layer of ``stage``, in build order."""
    p, k = stage.prefix, stage.kernel_size
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}

    def conv(name, cin, cout, size=k):
        shapes[name] = {"kernel": (size, size, size, cin, cout), "bias": (cout,)}

    def bn(name, channels):
        if stage.batch_norm:
            shapes[name] = {v: (channels,) for v in _WEIGHT_VARIABLES["bn"]}

    channels = stage.input_channels
    for level, features in enumerate(stage.level_features):
        level_in = channels
        for c in range(stage.conv_per_level):
            conv(f"{p}_conv_downarm_{level}_{c}", channels, features)
            channels = features
        if stage.residual and _expand_needed(level_in, features):
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


# --------------------------------------------------------------------------------------------------
# Keras 3 networks
# --------------------------------------------------------------------------------------------------


def _custom_layers():
    """Small Keras 3 layers of the cascades (defined lazily: keras is imported on first use)."""
    global _CUSTOM
    if _CUSTOM is None:
        import keras
        from keras import ops

        class ArgmaxOneHot(keras.layers.Layer):
            """argmax over channels, then one-hot with ``depth`` channels (float32)."""

            def __init__(self, depth: int, **kwargs):
                super().__init__(**kwargs)
                self.depth = int(depth)

            def call(self, x):
                return ops.one_hot(ops.argmax(x, axis=-1), self.depth, dtype="float32")

            def compute_output_shape(self, input_shape):
                return (*input_shape[:-1], self.depth)

        class MaskOneHot(keras.layers.Layer):
            """A (..., 1) binary mask -> two channels [not mask, mask] (float32)."""

            def call(self, x):
                return ops.one_hot(ops.cast(x[..., 0] > 0.5, "int32"), 2, dtype="float32")

            def compute_output_shape(self, input_shape):
                return (*input_shape[:-1], 2)

        class SpatialMean(keras.layers.Layer):
            """Mean over the three spatial axes: (B, X, Y, Z, C) -> (B, C)."""

            def call(self, x):
                return ops.mean(x, axis=(1, 2, 3))

            def compute_output_shape(self, input_shape):
                return (input_shape[0], input_shape[-1])

        class QCScores(keras.layers.Layer):
            """Channels 1.. of the QC regression, clipped to [0, 1] (as mri_synthseg reports them)."""

            def call(self, x):
                return ops.clip(x[:, 1:], 0.0, 1.0)

            def compute_output_shape(self, input_shape):
                return (input_shape[0], input_shape[1] - 1)

        _CUSTOM = {"ArgmaxOneHot": ArgmaxOneHot, "MaskOneHot": MaskOneHot, "SpatialMean": SpatialMean,
                   "QCScores": QCScores}
    return _CUSTOM


_CUSTOM: dict[str, Any] | None = None


def _unet(tensor: Any, stage: StageArchitecture) -> Any:
    """neurite's U-Net on ``tensor``; returns the softmax posteriors (layer ``<prefix>_prediction``)."""
    from keras import layers

    p, n = stage.prefix, stage.n_levels
    skips = {}
    for level, features in enumerate(stage.level_features):
        for c in range(stage.conv_per_level):
            tensor = layers.Conv3D(features, stage.kernel_size, padding="same", activation=stage.activation,
                                   name=f"{p}_conv_downarm_{level}_{c}")(tensor)
        skips[level] = tensor
        if stage.batch_norm:
            tensor = layers.BatchNormalization(axis=-1, name=f"{p}_bn_down_{level}")(tensor)
        if level < n - 1:
            tensor = layers.MaxPooling3D(2, padding="same", name=f"{p}_maxpool_{level}")(tensor)
    for j, features in enumerate(stage.decoder_features):
        tensor = layers.UpSampling3D(2, name=f"{p}_up_{n + j}")(tensor)
        if stage.skip_connections[j]:
            tensor = layers.Concatenate(axis=-1, name=f"{p}_merge_{n + j}")([skips[n - 2 - j], tensor])
        for c in range(stage.conv_per_level):
            tensor = layers.Conv3D(features, stage.kernel_size, padding="same", activation=stage.activation,
                                   name=f"{p}_conv_uparm_{n + j}_{c}")(tensor)
        if stage.batch_norm:
            tensor = layers.BatchNormalization(axis=-1, name=f"{p}_bn_up_{j}")(tensor)
    logits = layers.Conv3D(stage.n_outputs, 1, name=f"{p}_likelihood")(tensor)
    return layers.Activation("softmax", name=f"{p}_prediction", dtype="float32")(logits)


def _qc_regressor(tensor: Any, stage: StageArchitecture) -> Any:
    """The QC network on one-hot groups; returns the raw (B, n_outputs) regression ``qc_final_pred``."""
    from keras import layers

    p, k, act = stage.prefix, stage.kernel_size, stage.activation
    for level, features in enumerate(stage.level_features):
        level_input = tensor
        for c in range(stage.conv_per_level):
            last = c == stage.conv_per_level - 1
            tensor = layers.Conv3D(features, k, padding="same", activation=None if last else act,
                                   name=f"{p}_conv_downarm_{level}_{c}")(tensor)
        shortcut = level_input
        if _expand_needed(level_input.shape[-1], features):
            shortcut = layers.Conv3D(features, k, padding="same", activation=act,
                                     name=f"{p}_expand_down_merge_{level}")(level_input)
        tensor = layers.Add(name=f"{p}_res_down_merge_{level}")([shortcut, tensor])
        tensor = layers.Activation(act, name=f"{p}_res_down_merge_act_{level}")(tensor)
        if stage.batch_norm:
            tensor = layers.BatchNormalization(axis=-1, name=f"{p}_bn_down_{level}")(tensor)
        if level < stage.n_levels - 1:
            tensor = layers.MaxPooling3D(2, padding="same", name=f"{p}_maxpool_{level}")(tensor)
    tensor = layers.MaxPooling3D(2, padding="same", name=f"{p}_maxpool_{stage.n_levels - 1}")(tensor)
    tensor = layers.Conv3D(stage.n_outputs, k, padding="same", activation=act, name=f"{p}_final_conv_0")(tensor)
    tensor = layers.Conv3D(stage.n_outputs, k, padding="same", activation=act, name=f"{p}_final_conv_1")(tensor)
    return _custom_layers()["SpatialMean"](name=f"{p}_final_pred")(tensor)


def build_official_model(architecture: OfficialArchitecture) -> Any:
    """Build the Keras 3 network of ``architecture`` (weights as initialised by Keras).

    Returns
    -------
    keras.Model
        - segmentation: input ``image`` (B, X, Y, Z, 1) -> posteriors (B, X, Y, Z, K), softmax;
        - robust: the same; the stages' posteriors are the outputs of layers ``unet_prediction``,
          ``l2l_prediction`` and ``unet2_prediction`` (the model's output);
        - parcellation: inputs ``[image (B, X, Y, Z, 1), cortex (B, X, Y, Z, 1)]`` (cortex: 1 in
          voxels labelled 3 or 42, else 0) -> parcel posteriors (B, X, Y, Z, 69);
        - qc: input ``groups`` (B, X, Y, Z, 9), one-hot QC groups -> (B, 8) scores clipped to
          [0, 1]; the raw regression (B, 9) is the output of layer ``qc_final_pred``.
        Spatial sizes must be multiples of :attr:`OfficialArchitecture.size_multiple`.
    """
    import keras
    from keras import layers

    custom = _custom_layers()
    kind, stages = architecture.kind, architecture.stages
    name = f"synthseg_{kind}_{architecture.version}"
    if kind == "segmentation":
        image = keras.Input((None, None, None, 1), name="image", dtype="float32")
        return keras.Model(image, _unet(image, stages[0]), name=name)
    if kind == "robust":
        first, denoiser, second = stages
        image = keras.Input((None, None, None, 1), name="image", dtype="float32")
        tensor = _unet(image, first)
        tensor = custom["ArgmaxOneHot"](first.n_outputs, name="unet_to_l2l")(tensor)
        tensor = _unet(tensor, denoiser)
        tensor = custom["ArgmaxOneHot"](denoiser.n_outputs, name="l2l_to_unet2")(tensor)
        tensor = layers.Concatenate(axis=-1, name="unet2_image_and_labels")([image, tensor])
        return keras.Model(image, _unet(tensor, second), name=name)
    if kind == "parcellation":
        image = keras.Input((None, None, None, 1), name="image", dtype="float32")
        cortex = keras.Input((None, None, None, 1), name="cortex", dtype="float32")
        mask = custom["MaskOneHot"](name="cortex_one_hot")(cortex)
        tensor = layers.Concatenate(axis=-1, name="unet_parc_image_and_cortex")([image, mask])
        return keras.Model([image, cortex], _unet(tensor, stages[0]), name=name)
    if kind == "qc":
        groups = keras.Input((None, None, None, stages[0].input_channels), name="groups", dtype="float32")
        raw = _qc_regressor(groups, stages[0])
        return keras.Model(groups, custom["QCScores"](name="qc_scores")(raw), name=name)
    raise ValueError(f"unknown kind {kind!r}")


def _assign(model: Any, weights: H5Weights) -> None:
    for layer in model.layers:
        if not layer.weights:
            continue
        stored = weights.layers[layer.name]  # presence and shapes checked by infer_architecture
        layer.set_weights([stored[variable.name] for variable in layer.weights])


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    _assign(model, weights)
    return OfficialNetwork(
        kind=kind,
        version=version,
        description=_description(kind, version, architecture.n_outputs),
        path=path,
        sha256=_sha256(path),
        architecture=architecture,
        model=model,
        label_table=table,
        qc_names=QC_GROUP_NAMES if kind == "qc" else (),
    )


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


# --------------------------------------------------------------------------------------------------
# Export of our own model
# --------------------------------------------------------------------------------------------------


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
    from .model_file import load_model

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
            raise ValueError(f"{model_npz_path}: layer {layer.name} has no counterpart in SynthSeg's U-Net")
        variables = _WEIGHT_VARIABLES["bn" if "norm" in layer.name else "conv"]
        layers[name] = {v: values[v] for v in variables}
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
    from .. import __version__

    return write_weights(out_h5_path, ordered, attributes={"synthseg_bids_version": __version__,
                                                           "synthseg_bids_source": model_npz_path.name})
