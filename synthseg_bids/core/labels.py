"""FreeSurfer label values, names and groupings of the segmented structures.

The one place that knows what the network's output channels mean:

- :data:`SYNTHSEG_STRUCTURES`: the 33 structures (background included) segmented by
  the original SynthSeg 2.0 models, in posterior-channel order, with FreeSurfer values,
  names, BIDS abbreviations, FreeSurfer LUT colours, left/right mirror and the
  topological group used by connected-component post-processing.
- :class:`LabelTable`: an ordered set of structures with vectorised look-ups
  (value -> channel index, left/right swap permutation) and BIDS ``dseg.tsv`` writing.
- :func:`segmentation_labels_for`: maps generation labels (those present in the
  training label maps, including extra-cerebral tissue) to segmentation labels.

Values and names follow FreeSurfer's ``FreeSurferColorLUT.txt``; the grouping follows
SynthSeg's ``synthseg_topological_classes_2.0.npy``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "EXTRA_LABEL_MERGES",
    "SYNTHSEG_STRUCTURES",
    "LabelTable",
    "Structure",
    "default_label_table",
    "segmentation_labels_for",
]


@dataclass(frozen=True)
class Structure:
    """One segmented structure.

    Attributes
    ----------
    value : FreeSurfer label value stored in label maps.
    name : FreeSurfer name (``Left-Cerebral-White-Matter``).
    abbreviation : short BIDS ``dseg.tsv`` abbreviation.
    color : RGB colour (0-255) from FreeSurfer's LUT.
    mirror : label value of the contralateral structure (itself if unpaired).
    group : topological group; post-processing keeps the largest connected
        component of each group > 0 (0: not post-processed).
    """

    value: int
    name: str
    abbreviation: str
    color: tuple[int, int, int]
    mirror: int
    group: int

    @property
    def hemisphere(self) -> str:
        """'left', 'right' or '' (midline / unpaired)."""
        if self.name.startswith("Left-"):
            return "left"
        if self.name.startswith("Right-"):
            return "right"
        return ""


def _pair(lv, rv, stem, abbr, color, lgroup, rgroup):
    return (
        Structure(lv, f"Left-{stem}", f"L{abbr}", color, rv, lgroup),
        Structure(rv, f"Right-{stem}", f"R{abbr}", color, lv, rgroup),
    )


_PAIRS = [
    _pair(2, 41, "Cerebral-White-Matter", "CWM", (245, 245, 245), 4, 14),
    _pair(3, 42, "Cerebral-Cortex", "CCtx", (205, 62, 78), 4, 14),
    _pair(4, 43, "Lateral-Ventricle", "LatVent", (120, 18, 134), 4, 14),
    _pair(5, 44, "Inf-Lat-Vent", "InfLatVent", (196, 58, 250), 4, 14),
    _pair(7, 46, "Cerebellum-White-Matter", "CbWM", (220, 248, 164), 5, 15),
    _pair(8, 47, "Cerebellum-Cortex", "CbCtx", (230, 148, 34), 5, 15),
    _pair(10, 49, "Thalamus", "Thal", (0, 118, 14), 6, 16),
    _pair(11, 50, "Caudate", "Caud", (122, 186, 220), 7, 17),
    _pair(12, 51, "Putamen", "Put", (236, 13, 176), 8, 18),
    _pair(13, 52, "Pallidum", "Pall", (12, 48, 255), 9, 19),
    _pair(17, 53, "Hippocampus", "Hipp", (220, 216, 20), 10, 20),
    _pair(18, 54, "Amygdala", "Amyg", (103, 255, 255), 11, 21),
    _pair(26, 58, "Accumbens-area", "Acc", (255, 165, 0), 12, 22),
    _pair(28, 60, "VentralDC", "VDC", (165, 42, 42), 13, 23),
]
_LEFT = {s.value: s for s, _ in _PAIRS}
_RIGHT = {s.value: s for _, s in _PAIRS}
_MIDLINE = {
    0: Structure(0, "Unknown", "BG", (0, 0, 0), 0, 0),
    14: Structure(14, "3rd-Ventricle", "3rdVent", (204, 182, 142), 14, 1),
    15: Structure(15, "4th-Ventricle", "4thVent", (42, 204, 164), 15, 2),
    16: Structure(16, "Brain-Stem", "BS", (119, 159, 176), 16, 3),
    24: Structure(24, "CSF", "CSF", (60, 60, 60), 24, 0),
}
_ALL = {**_MIDLINE, **_LEFT, **_RIGHT}

#: Posterior-channel order of the original SynthSeg 2.0 models (labels_table.txt).
_ORDER = [0, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 26, 24, 28,
          41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 58, 60]

#: The 33 structures, background first, in posterior-channel order.
SYNTHSEG_STRUCTURES: tuple[Structure, ...] = tuple(_ALL[v] for v in _ORDER)

#: Generation labels that are not segmented themselves but belong to a structure:
#: lesions count as white matter, choroid plexus-like labels as ventricles
#: (as in SynthSeg's ``synthseg_segmentation_labels_2.0.npy``).
EXTRA_LABEL_MERGES: dict[int, int] = {25: 2, 57: 41, 136: 4, 137: 5, 163: 43, 164: 44}


class LabelTable:
    """An ordered set of structures: channel ``i`` of a network is ``structures[i]``.

    Parameters
    ----------
    structures
        The structures in channel order; the first must be background (value 0).

    Examples
    --------
    >>> table = default_label_table()
    >>> len(table), table.values[:4].tolist()
    (33, [0, 2, 3, 4])
    >>> table.index_of([0, 41, 2]).tolist()
    [0, 19, 1]
    >>> table.values[table.flip_permutation][table.index_of([2])].tolist()
    [41]
    """

    def __init__(self, structures: Sequence[Structure]):
        structures = tuple(structures)
        if not structures or structures[0].value != 0:
            raise ValueError("a label table must start with the background (value 0)")
        values = [s.value for s in structures]
        if len(set(values)) != len(values):
            raise ValueError(f"duplicate label values in table: {values}")
        self.structures = structures
        self.values = np.array(values, dtype=np.int32)
        self._lut = np.full(int(self.values.max()) + 1, -1, dtype=np.int32)
        self._lut[self.values] = np.arange(len(values), dtype=np.int32)

    @classmethod
    def from_values(cls, values: Iterable[int]) -> "LabelTable":
        """Table of known FreeSurfer values (any order, background first)."""
        values = [int(v) for v in values]
        unknown = [v for v in values if v not in _ALL]
        if unknown:
            raise ValueError(f"unknown segmentation label value(s) {unknown}; known: {sorted(_ALL)}")
        return cls([_ALL[v] for v in values])

    def __len__(self) -> int:
        return len(self.structures)

    def __iter__(self):
        return iter(self.structures)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelTable) and self.structures == other.structures

    def __repr__(self) -> str:
        return f"LabelTable({len(self)} structures: {self.values.tolist()})"

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.structures]

    @property
    def groups(self) -> np.ndarray:
        """Topological group of each channel (0: not post-processed)."""
        return np.array([s.group for s in self.structures], dtype=np.int32)

    def index_of(self, values: np.ndarray | Sequence[int]) -> np.ndarray:
        """Channel index of each label value (vectorised; raises on unknown values)."""
        values = np.asarray(values)
        if values.size == 0:
            return values.astype(np.int32)
        if values.min() < 0 or values.max() >= self._lut.size:
            raise ValueError(f"label values outside this table: {sorted(set(np.unique(values)) - set(self.values))}")
        index = self._lut[values]
        if np.any(index < 0):
            bad = np.unique(values[index < 0]).tolist()
            raise ValueError(f"label values not in this table: {bad}")
        return index

    @property
    def flip_permutation(self) -> np.ndarray:
        """Channel permutation that swaps each left structure with its right mirror.

        ``posteriors[..., flip_permutation]`` relabels a left/right flipped prediction.
        Structures whose mirror is missing from the table map to themselves.
        """
        present = set(self.values.tolist())
        mirrors = [s.mirror if s.mirror in present else s.value for s in self.structures]
        return self.index_of(mirrors)

    def colour_lut(self, alpha: float = 1.0) -> np.ndarray:
        """RGBA colours (0-1) indexed by label value: ``table.colour_lut()[label_map]`` colours a map.

        FreeSurfer's LUT colours (those of :meth:`dseg_tsv`); the background and values
        not in the table are transparent (alpha 0), the structures get ``alpha``.
        """
        lut = np.zeros((int(self.values.max()) + 1, 4), dtype=np.float32)
        for s in self.structures:
            if s.value:
                lut[s.value, :3] = np.asarray(s.color, dtype=np.float32) / 255.0
                lut[s.value, 3] = alpha
        return lut

    def to_metadata(self) -> list[dict]:
        """Plain list for model files / JSON sidecars."""
        return [{"value": s.value, "name": s.name} for s in self.structures]

    @classmethod
    def from_metadata(cls, records: Sequence[dict]) -> "LabelTable":
        table = cls.from_values([int(r["value"]) for r in records])
        names = [r.get("name") for r in records]
        if any(n is not None and n != s.name for n, s in zip(names, table.structures)):
            raise ValueError("label names in metadata do not match FreeSurfer's names for their values")
        return table

    def dseg_tsv(self) -> str:
        """BIDS ``dseg.tsv`` text: index, name, abbreviation, color (hex).

        ``index`` is the voxel value stored in the ``_dseg`` image (the FreeSurfer
        value, as SynthSeg writes).
        """
        lines = ["index\tname\tabbreviation\tcolor"]
        for s in self.structures:
            color = "#%02x%02x%02x" % s.color
            lines.append(f"{s.value}\t{s.name}\t{s.abbreviation}\t{color}")
        return "\n".join(lines) + "\n"

    def write_dseg_tsv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`dseg_tsv` atomically to ``path``."""
        from .io import atomic_write_text

        return atomic_write_text(path, self.dseg_tsv())


def default_label_table() -> LabelTable:
    """The 33 SynthSeg 2.0 structures (CSF included), in posterior order."""
    return LabelTable(SYNTHSEG_STRUCTURES)


def segmentation_labels_for(generation_labels: Sequence[int], table: LabelTable) -> np.ndarray:
    """Segmentation label of each generation label.

    A generation label keeps its value if the table has it, is merged into its
    structure per :data:`EXTRA_LABEL_MERGES`, and becomes background (0) otherwise
    (skull, scalp, eyes, vessels, ...).
    """
    present = set(table.values.tolist())
    out = []
    for v in generation_labels:
        v = int(v)
        if v in present:
            out.append(v)
        elif EXTRA_LABEL_MERGES.get(v) in present:
            out.append(EXTRA_LABEL_MERGES[v])
        else:
            out.append(0)
    return np.array(out, dtype=np.int32)
