"""What the generative model generates from: labels, classes, priors, and the label maps.

:class:`GenerationSpec` fixes the *generation labels* (every value that may occur in a
training label map, extra-cerebral tissue included), their Gaussian-mixture *classes*
(labels of one class share one Gaussian; left and right parts of a structure share a
class), the optional prior arrays, the left/right swap used by flipping and the output
:class:`~synthseg_bids.core.labels.LabelTable` with the output label of each generation
label.

:func:`load_training_maps` converts label maps once to ``uint8`` indices into
``spec.generation_labels`` (a look-up table, no per-label loop), reoriented to RAS so that
array axis 0 runs from left to right: the generator flips along axis 0.

Reference: SynthSeg (B. Billot et al.), ``SynthSeg/brain_generator.py`` (generation labels,
``n_neutral_labels`` ordering: background, non-sided labels, one hemisphere, the other
hemisphere in the same order) and ``SynthSeg/model_inputs.py``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..core.io import ImageError, image_suffix, load_label_map
from ..core.labels import EXTRA_LABEL_MERGES, SYNTHSEG_STRUCTURES, LabelTable, default_label_table, segmentation_labels_for
from .settings import GeneratorSettings

__all__ = [
    "GenerationSpec",
    "TrainingMaps",
    "flip_permutation_from_mirrors",
    "flip_permutation_from_n_neutral",
    "list_label_maps",
    "load_training_maps",
    "reorient_to_ras",
    "spec_next_to",
]

PathLike = str | os.PathLike

#: FreeSurfer left/right pairs among generation labels that are not segmented structures
#: (FreeSurferColorLUT.txt): cerebral/cerebellum exterior, thalamus (unused), insula,
#: operculum, substantia nigra, undetermined, vessel, choroid plexus.
_EXTRA_PAIRS = {1: 40, 6: 45, 9: 48, 19: 55, 20: 56, 27: 59, 29: 61, 30: 62, 31: 63}


def _build_mirrors() -> dict[int, int]:
    """Mirror value of every FreeSurfer label this module knows to be sided."""
    mirrors = {s.value: s.mirror for s in SYNTHSEG_STRUCTURES}
    # Extra labels merged into a sided structure pair up like their structures (25 -> 2, 57 -> 41).
    for extra, target in EXTRA_LABEL_MERGES.items():
        target_mirror = mirrors.get(target, target)
        partners = [e for e, t in EXTRA_LABEL_MERGES.items() if t == target_mirror and target_mirror != target]
        if len(partners) == 1:
            mirrors[extra] = partners[0]
    for left, right in _EXTRA_PAIRS.items():
        mirrors[left], mirrors[right] = right, left
    return mirrors


_MIRRORS = _build_mirrors()


def _mirror_value(value: int) -> int:
    """FreeSurfer value of the contralateral structure (``value`` itself if unpaired)."""
    if value in _MIRRORS:
        return _MIRRORS[value]
    # Cortical parcellations: ctx-lh-* 1000-1999 <-> ctx-rh-* 2000-2999, wm-lh 3000s <-> wm-rh 4000s.
    for left_start in (1000, 3000):
        if left_start <= value < left_start + 1000:
            return value + 1000
        if left_start + 1000 <= value < left_start + 2000:
            return value - 1000
    return value


def flip_permutation_from_mirrors(generation_labels: Sequence[int]) -> np.ndarray:
    """Index permutation swapping each generation label with its FreeSurfer mirror.

    Parameters
    ----------
    generation_labels
        FreeSurfer label values (G,).

    Returns
    -------
    numpy.ndarray of int32, shape (G,)
        ``perm[i]`` is the index of the mirror of label ``i``; labels whose mirror is not
        among ``generation_labels`` (or that are unpaired) map to themselves.
    """
    labels = [int(v) for v in generation_labels]
    position = {v: i for i, v in enumerate(labels)}
    return np.array([position.get(_mirror_value(v), i) for i, v in enumerate(labels)], dtype=np.int32)


def flip_permutation_from_n_neutral(n_labels: int, n_neutral: int) -> np.ndarray:
    """Permutation for SynthSeg's ordering: ``n_neutral`` unpaired labels, then left, then right.

    Raises
    ------
    ValueError
        If the remaining labels cannot be split into two halves.
    """
    n_sided = n_labels - n_neutral
    if n_neutral < 1 or n_sided < 0 or n_sided % 2:
        raise ValueError(f"cannot split {n_labels} generation labels with {n_neutral} non-sided ones into two halves")
    half = n_sided // 2
    neutral = np.arange(n_neutral)
    left = np.arange(n_neutral, n_neutral + half)
    return np.concatenate([neutral, left + half, left]).astype(np.int32)


def _classes_sharing_mirrors(flip_permutation: np.ndarray) -> np.ndarray:
    """One class per label, left and right of a pair sharing one (numbered by first appearance)."""
    representative = np.minimum(np.arange(len(flip_permutation)), flip_permutation)
    _, classes = np.unique(representative, return_inverse=True)
    return classes.astype(np.int32)


def _load_npy(path: PathLike, what: str) -> np.ndarray:
    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read {what} ({err})") from None


@dataclass(frozen=True, eq=False)
class GenerationSpec:
    """Generation labels and everything aligned on them.

    Attributes
    ----------
    generation_labels : numpy.ndarray of int32, shape (G,)
        Label values that may occur in the training maps (background 0 first).
    generation_classes : numpy.ndarray of int32, shape (G,)
        Gaussian-mixture class of each label, values 0..C-1 (all present).
    flip_permutation : numpy.ndarray of int32, shape (G,)
        Index of the contralateral label of each generation label (left <-> right).
    segmentation_labels : numpy.ndarray of int32, shape (G,)
        Output (FreeSurfer) label of each generation label: 0 for extra-cerebral tissue.
    label_table : LabelTable
        The output channels; ``segmentation_labels`` are all in it.
    prior_means, prior_stds : numpy.ndarray of float32, shape (2, C), or None
        Per-class hyper-parameters (rows: low/high for 'uniform', mean/std for 'normal');
        ``None`` uses the settings' ranges for every class.
    """

    generation_labels: np.ndarray
    generation_classes: np.ndarray
    flip_permutation: np.ndarray
    segmentation_labels: np.ndarray
    label_table: LabelTable
    prior_means: np.ndarray | None = None
    prior_stds: np.ndarray | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.generation_labels, dtype=np.int32)
        object.__setattr__(self, "generation_labels", labels)
        for name in ("generation_classes", "flip_permutation", "segmentation_labels"):
            value = np.asarray(getattr(self, name), dtype=np.int32)
            if value.shape != labels.shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {labels.shape} (one per generation label)")
            object.__setattr__(self, name, value)
        if labels.ndim != 1 or labels.size == 0 or len(np.unique(labels)) != labels.size:
            raise ValueError("generation_labels must be a non-empty 1D array of distinct values")
        if labels.size > 255:
            raise ValueError(f"at most 255 generation labels are supported (uint8 indices), got {labels.size}")
        if labels[0] != 0 or labels.min() < 0:
            raise ValueError("generation labels must be >= 0 with the background (0) first")
        classes = self.generation_classes
        if not np.array_equal(np.unique(classes), np.arange(classes.max() + 1)):
            raise ValueError("generation_classes must use every value 0..C-1")
        perm = self.flip_permutation
        if not np.array_equal(np.sort(perm), np.arange(labels.size)) or not np.array_equal(perm[perm], np.arange(labels.size)):
            raise ValueError("flip_permutation must be a permutation that is its own inverse")
        self.label_table.index_of(self.segmentation_labels)  # raises on labels outside the table
        for name in ("prior_means", "prior_stds"):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, dtype=np.float32)
            if value.shape != (2, self.n_classes):
                raise ValueError(f"{name} has shape {value.shape}, expected (2, {self.n_classes}) (2 rows, one column per class)")
            object.__setattr__(self, name, value)

    # -- derived ------------------------------------------------------------
    @property
    def n_labels(self) -> int:
        """Number of generation labels G."""
        return int(self.generation_labels.size)

    @property
    def n_classes(self) -> int:
        """Number of Gaussian-mixture classes C."""
        return int(self.generation_classes.max()) + 1

    @property
    def channel_of_index(self) -> np.ndarray:
        """Output channel (index into ``label_table``) of each generation index, int32 (G,)."""
        return self.label_table.index_of(self.segmentation_labels).astype(np.int32)

    def index_lut(self) -> np.ndarray:
        """Look-up table label value -> generation index (-1 for values not generated)."""
        lut = np.full(int(self.generation_labels.max()) + 1, -1, dtype=np.int32)
        lut[self.generation_labels] = np.arange(self.n_labels, dtype=np.int32)
        return lut

    # -- constructors ---------------------------------------------------------
    @classmethod
    def from_labels(
        cls,
        generation_labels: Sequence[int] | np.ndarray,
        *,
        generation_classes: Sequence[int] | np.ndarray | None = None,
        n_neutral: int | None = None,
        label_table: LabelTable | None = None,
        prior_means: np.ndarray | None = None,
        prior_stds: np.ndarray | None = None,
    ) -> "GenerationSpec":
        """Spec for a list of generation labels.

        Parameters
        ----------
        generation_labels
            Label values (G,).
        generation_classes
            Class of each label; default one class per label, left/right pairs sharing.
        n_neutral
            Number of non-sided labels in SynthSeg's ordering (flip permutation from the
            ordering); default: from FreeSurfer's left/right values.
        label_table
            Output table; default :func:`~synthseg_bids.core.labels.default_label_table`.
        prior_means, prior_stds
            Optional (2, C) prior arrays.
        """
        labels = np.asarray(generation_labels, dtype=np.int32)
        if n_neutral is None:
            perm = flip_permutation_from_mirrors(labels)
        else:
            perm = flip_permutation_from_n_neutral(labels.size, n_neutral)
        classes = _classes_sharing_mirrors(perm) if generation_classes is None else np.asarray(generation_classes)
        table = default_label_table() if label_table is None else label_table
        return cls(
            generation_labels=labels,
            generation_classes=classes,
            flip_permutation=perm,
            segmentation_labels=segmentation_labels_for(labels, table),
            label_table=table,
            prior_means=prior_means,
            prior_stds=prior_stds,
        )

    @classmethod
    def from_folder(
        cls,
        folder: PathLike,
        *,
        classes: str = "generation_classes.npy",
        prior_means: str | None = None,
        prior_stds: str | None = None,
        n_neutral: int | None = None,
        label_table: LabelTable | None = None,
    ) -> "GenerationSpec":
        """Spec from SynthSeg's ``labels_classes_priors`` folder of ``.npy`` arrays.

        Parameters
        ----------
        folder
            Folder with ``generation_labels.npy`` and the arrays named below.
        classes
            File of the generation classes (``generation_classes_contrast_specific.npy`` for
            the T1 priors).
        prior_means, prior_stds
            Optional prior files in that folder (e.g. ``prior_means_t1.npy``).
        n_neutral
            Non-sided label count of SynthSeg's ordering (18 for the shared list); default:
            the flip permutation comes from FreeSurfer's left/right values.
        label_table
            Output table (default :func:`~synthseg_bids.core.labels.default_label_table`).
        """
        folder = Path(folder)
        labels = _load_npy(folder / "generation_labels.npy", "generation labels")
        return cls.from_labels(
            labels,
            generation_classes=_load_npy(folder / classes, "generation classes"),
            n_neutral=n_neutral,
            label_table=label_table,
            prior_means=None if prior_means is None else _load_npy(folder / prior_means, "prior means"),
            prior_stds=None if prior_stds is None else _load_npy(folder / prior_stds, "prior stds"),
        )

    @classmethod
    def from_label_maps(
        cls, label_maps: PathLike | Sequence[PathLike], *, label_table: LabelTable | None = None
    ) -> "GenerationSpec":
        """Spec from the labels present in label maps: one class per label (left/right sharing), no priors."""
        values = set()
        for path in list_label_maps(label_maps):
            values.update(np.unique(load_label_map(path).data).tolist())
        values.add(0)
        return cls.from_labels(sorted(values), label_table=label_table)

    def with_class_means(self, class_means: Mapping[int, float]) -> "GenerationSpec":
        """A copy whose prior means (row 0 of ``prior_means``) of some classes are replaced.

        Used to turn SynthSeg's T1 priors into another fixed contrast: the other classes
        and the prior standard deviations are kept.
        """
        if self.prior_means is None:
            raise ValueError("with_class_means needs a spec with prior means (e.g. SynthSeg's T1 priors)")
        means = self.prior_means.copy()
        for cls, value in class_means.items():
            if not 0 <= int(cls) < self.n_classes:
                raise ValueError(f"class {cls} is not a generation class (0..{self.n_classes - 1})")
            means[0, int(cls)] = value
        return dataclasses.replace(self, prior_means=means)

    def with_settings(self, settings: GeneratorSettings) -> "GenerationSpec":
        """A copy whose classes / priors are replaced by the files named in ``settings``.

        Prior arrays that no longer match the number of classes are dropped only when new
        classes are given without new priors (the settings' ranges then apply).
        """
        changes: dict = {}
        if settings.generation_classes is not None:
            changes["generation_classes"] = _load_npy(settings.generation_classes, "generation classes")
            changes["prior_means"] = changes["prior_stds"] = None
        if settings.prior_means is not None:
            changes["prior_means"] = _load_npy(settings.prior_means, "prior means")
        if settings.prior_stds is not None:
            changes["prior_stds"] = _load_npy(settings.prior_stds, "prior stds")
        return dataclasses.replace(self, **changes) if changes else self


@dataclass(frozen=True, eq=False)
class TrainingMaps:
    """Training label maps as generation indices.

    Attributes
    ----------
    indices : numpy.ndarray of uint8, shape (N, X, Y, Z)
        Index into ``spec.generation_labels`` of every voxel, RAS orientation.
    affine : numpy.ndarray, shape (4, 4)
        RAS voxel-to-world affine of the first map (all maps share shape and voxel size).
    paths : tuple of Path
        Source files, in the order of ``indices``.
    affines : numpy.ndarray, shape (N, 4, 4)
        RAS affine of each map.
    """

    indices: np.ndarray
    affine: np.ndarray
    paths: tuple[Path, ...]
    affines: np.ndarray

    @property
    def voxel_size(self) -> np.ndarray:
        """Voxel size (mm) along each RAS array axis."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def spec_next_to(label_maps_folder: PathLike) -> GenerationSpec | None:
    """The spec of SynthSeg's ``labels_classes_priors`` folder next to a folder of label maps.

    ``None`` when that folder has no ``generation_labels.npy`` (callers then derive the spec
    from the labels present in the maps).
    """
    folder = Path(label_maps_folder).parent / "labels_classes_priors"
    return GenerationSpec.from_folder(folder) if (folder / "generation_labels.npy").is_file() else None


def list_label_maps(paths_or_folder: PathLike | Sequence[PathLike]) -> list[Path]:
    """The label map files of a folder (sorted), a single file, or a list of files.

    Raises
    ------
    ImageError
        If the folder does not exist or holds no image file, or the list is empty.
    """
    if isinstance(paths_or_folder, (str, os.PathLike)):
        path = Path(paths_or_folder)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and image_suffix(p))
            if not files:
                raise ImageError(path, "contains no label maps (.nii, .nii.gz or .mgz files)")
            return files
        if not path.exists():
            raise ImageError(path, "label map file or folder not found")
        return [path]
    files = [Path(p) for p in paths_or_folder]
    if not files:
        raise ImageError(Path("."), "no label maps given (empty list)")
    return files


def reorient_to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip array axes to the closest RAS orientation (as ``nibabel.as_closest_canonical``).

    Returns
    -------
    data : numpy.ndarray
        Array whose axis 0 runs left -> right, axis 1 posterior -> anterior, axis 2 inferior -> superior.
    affine : numpy.ndarray, shape (4, 4)
        The affine of the reoriented array (same world coordinates for every voxel).
    """
    current = nib.orientations.io_orientation(affine)
    transform = nib.orientations.ornt_transform(current, nib.orientations.axcodes2ornt("RAS"))
    new_data = nib.orientations.apply_orientation(data, transform)
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, data.shape)
    return np.ascontiguousarray(new_data), new_affine


def _to_indices(data: np.ndarray, lut: np.ndarray, spec: GenerationSpec, path: PathLike) -> np.ndarray:
    """Label values -> uint8 generation indices; unknown values raise ImageError naming them."""
    low, high = int(data.min()), int(data.max())
    if low < 0 or high >= lut.size:
        in_range = (data >= 0) & (data < lut.size)
        unknown = np.unique(data[~in_range])
        in_range_unknown = np.unique(data[in_range][lut[data[in_range]] < 0])
        unknown = np.union1d(unknown, in_range_unknown)
    else:
        indices = lut[data]
        if indices.min() >= 0:
            return indices.astype(np.uint8)
        unknown = np.unique(data[indices < 0])
    shown = ", ".join(str(v) for v in unknown[:20]) + (", ..." if unknown.size > 20 else "")
    raise ImageError(
        path,
        f"has unknown labels without priors: {shown} (not among the {spec.n_labels} generation labels)",
    )


def load_training_maps(paths_or_folder: PathLike | Sequence[PathLike], spec: GenerationSpec) -> TrainingMaps:
    """Load label maps once as uint8 generation indices in RAS orientation.

    Parameters
    ----------
    paths_or_folder
        A folder (every .nii/.nii.gz/.mgz file in it, sorted), one file, or a list of files.
    spec
        Generation labels to index into.

    Raises
    ------
    ImageError
        Naming the file: missing folder or no maps in it, unreadable or non-integer map,
        shape different from the first map (after reorientation), or labels that are not
        generation labels.
    """
    paths = list_label_maps(paths_or_folder)
    lut = spec.index_lut()
    arrays, affines = [], []
    for path in paths:
        image = load_label_map(path)
        data, affine = reorient_to_ras(image.data, image.affine)
        if arrays and data.shape != arrays[0].shape:
            raise ImageError(
                path, f"has shape {data.shape} in RAS orientation but {paths[0].name} has {arrays[0].shape}; "
                "all training maps must share one shape"
            )
        arrays.append(_to_indices(data, lut, spec, path))
        affines.append(affine)
    stacked = np.stack(arrays)
    return TrainingMaps(indices=stacked, affine=affines[0], paths=tuple(paths), affines=np.stack(affines))
