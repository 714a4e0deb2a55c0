"""Label tables of SynthSeg's published networks and the QC network's structure groups.

Data: FreeSurfer's ``FreeSurferColorLUT.txt`` and SynthSeg's label lists.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...core.labels import LabelTable, Structure, default_label_table

__all__ = ["DK_PARCELLATION_TABLE", "QC_GROUP_NAMES", "official_label_table", "qc_group_of"]

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
