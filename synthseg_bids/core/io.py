"""Image and file I/O: NIfTI/MGZ loading with validation, atomic writes.

Every loader raises :class:`ImageError` whose message starts with the file name and
states the one problem found, so command-line tools can print it as a one-line error.
Every writer writes to a temporary name in the destination folder and renames it into
place, so a crash never leaves a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "Image",
    "ImageError",
    "atomic_path",
    "atomic_write_text",
    "file_sha256",
    "image_suffix",
    "load_image",
    "load_label_map",
    "save_image",
    "strip_image_suffix",
    "table_text",
    "write_table",
]

#: File name endings recognised as images (longest first).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mgz")


class ImageError(ValueError):
    """An image file is missing, unreadable or unusable; the message names the file."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class Image:
    """A 3D array with its voxel-to-world (RAS+ mm) affine.

    ``header`` keeps the source header (or ``None``) so that saving can preserve
    qform/sform codes and units; it is never used to reinterpret ``data``.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def zooms(self) -> np.ndarray:
        """Voxel size in mm along each array axis, from the affine."""
        return voxel_sizes(self.affine)


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Length of each column of the affine's linear part (mm per voxel step)."""
    return np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))


def image_suffix(path: str | os.PathLike) -> str:
    """The recognised image suffix of ``path`` ('' if none)."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def strip_image_suffix(path: str | os.PathLike) -> str:
    """File name without its image suffix: ``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``."""
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def load_image(
    path: str | os.PathLike,
    *,
    dtype: np.dtype | type | None = np.float32,
    allow_single_volume_4d: bool = True,
) -> Image:
    """Load a 3D NIfTI (.nii/.nii.gz) or FreeSurfer (.mgz) image, validated.

    Parameters
    ----------
    path
        Image file.
    dtype
        Cast the voxel data to this type (``None`` keeps the stored type).
    allow_single_volume_4d
        Accept a 4D file whose last axis has length 1 (dropped).

    Raises
    ------
    ImageError
        Missing, not an image, corrupt/truncated, not 3D (2D, or 4D with several
        volumes), empty, non-finite voxels, or zero/negative/non-finite voxel size.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(path, "file not found")
    if path.is_dir():
        raise ImageError(path, "is a folder, not an image file")
    if not image_suffix(path):
        raise ImageError(path, f"not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for bad files
        raise ImageError(path, f"cannot be read as an image ({_short(err)})") from None

    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1 and allow_single_volume_4d:
        shape = shape[:3]
    elif len(shape) == 4:
        raise ImageError(path, f"is 4D with {shape[3]} volumes; give one 3D volume")
    if len(shape) != 3:
        raise ImageError(path, f"is {len(img.shape)}D with shape {tuple(img.shape)}; expected a 3D volume")
    if min(shape) < 1 or int(np.prod(shape)) == 0:
        raise ImageError(path, f"is empty (shape {shape})")

    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise ImageError(path, "has a non-finite affine")
    zooms = voxel_sizes(affine)
    header_zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
    if isinstance(img.header, nib.Nifti1Header):
        # nibabel "fixes" zero/negative pixdim on load (to 1 / abs); read them unfixed
        try:
            with nib.openers.ImageOpener(str(path)) as fobj:
                raw_header = type(img.header).from_fileobj(fobj, check=False)
            header_zooms = np.asarray(raw_header["pixdim"][1:4], dtype=float)
        except Exception as err:
            raise ImageError(path, f"header cannot be read ({_short(err)})") from None
    if np.any(~np.isfinite(header_zooms)) or np.any(header_zooms <= 0) or np.any(zooms <= 1e-6):
        raise ImageError(path, "has zero, negative or invalid voxel size "
                         f"({', '.join(f'{float(z):g}' for z in header_zooms)})")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ImageError(path, "has a singular affine (voxel axes are not independent)")

    try:
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # truncated gzip, header lying about size, ...
        raise ImageError(path, f"voxel data cannot be read, the file may be truncated ({_short(err)})") from None
    data = data.reshape(shape)
    if data.dtype.kind not in "biuf":
        raise ImageError(path, f"has unsupported voxel type {data.dtype}")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        raise ImageError(path, f"contains {n_bad} NaN or infinite voxel(s)")
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    header = img.header if isinstance(img.header, nib.Nifti1Header) else None
    return Image(data=np.asarray(data), affine=affine, header=header, path=path)


def load_label_map(path: str | os.PathLike, *, dtype: type = np.int32) -> Image:
    """Load a label map: like :func:`load_image` but values must be integers.

    Float-stored maps are accepted when every value is integral (some FreeSurfer
    files store labels as float32).
    """
    img = load_image(path, dtype=None)
    data = img.data
    if data.dtype.kind == "f":
        if not np.array_equal(data, np.round(data)):
            raise ImageError(path, "is not a label map: it has non-integer values")
    elif data.dtype.kind == "b":
        data = data.astype(np.uint8)
    if data.size and (data.min() < np.iinfo(dtype).min or data.max() > np.iinfo(dtype).max):
        raise ImageError(path, f"has label values outside the range of {np.dtype(dtype).name}")
    img.data = data.astype(dtype, copy=False)
    return img


def save_image(
    data: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    *,
    dtype: np.dtype | type | None = None,
    header: nib.Nifti1Header | None = None,
) -> Path:
    """Save an array as NIfTI (.nii/.nii.gz) or MGZ (.mgz), atomically.

    The image is written under a temporary name in the same folder and renamed,
    so readers never see a partial file and an earlier file is replaced only by
    a complete one. The folder is created if needed.
    """
    path = Path(path)
    suffix = image_suffix(path)
    if not suffix:
        raise ImageError(path, f"output name must end in one of {', '.join(IMAGE_SUFFIXES)}")
    data = np.asarray(data)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    if data.dtype == np.int64:
        data = data.astype(np.int32)
    affine = np.asarray(affine, dtype=np.float64)
    if suffix == ".mgz":
        img = nib.MGHImage(data, affine)
    else:
        hdr = header.copy() if header is not None else None
        img = nib.Nifti1Image(data, affine, header=hdr)
        img.set_data_dtype(data.dtype)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        img.header.set_xyzt_units("mm", "sec")
        if data.dtype.kind == "f":
            img.header["scl_slope"] = np.nan  # no scaling: store the floats as they are
            img.header["scl_inter"] = np.nan
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    The temporary name keeps the suffix (nibabel picks the format from it). On an
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = image_suffix(path) or "".join(path.suffixes[-1:])
    tmp = _create_temporary(path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _create_temporary(folder: Path, *, prefix: str, suffix: str) -> Path:
    """Create an empty, new file with a random name in ``folder``; return its path.

    Unlike :func:`tempfile.mkstemp` (always mode 0600), the file is created with mode
    0666 filtered by the process umask, exactly as ``open(path, "w")`` would create
    it, so the renamed final file has the permissions the user expects (0644 under
    umask 022, 0600 under 077). Writers reopen the path for writing, which keeps the mode.
    """
    for _ in range(100):
        candidate = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"{folder}: cannot create a unique temporary file named {prefix}*{suffix}")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as hex (:func:`hashlib.file_digest`, read in blocks)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically (temporary file + rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def table_text(
    table,
    *,
    sep: str = "\t",
    na_rep: str = "n/a",
    formats: dict[str, str] | None = None,
    float_format: str | None = None,
) -> str:
    """Text of a pandas DataFrame as a TSV (default) or CSV: header row, no index.

    Parameters
    ----------
    table : pandas.DataFrame
    sep : str
        ``"\\t"`` (BIDS TSV) or ``","``.
    na_rep : str
        Text of missing values (``n/a`` in BIDS tables).
    formats : dict, optional
        Column -> ``%`` format (``"%.3f"``) applied to every non-missing value of that
        column, so each column has one fixed number format.
    float_format : str, optional
        Format of the float columns not in ``formats`` (pandas' ``repr`` when ``None``).
    """
    if formats:
        table = table.copy()
        for column, fmt in formats.items():
            if column in table.columns:
                table[column] = [na_rep if _missing(v) else fmt % v for v in table[column]]
    return table.to_csv(sep=sep, index=False, na_rep=na_rep, float_format=float_format, lineterminator="\n")


def write_table(path: str | os.PathLike, table, **options) -> Path:
    """Write a pandas DataFrame atomically as a TSV/CSV (options: see :func:`table_text`)."""
    return atomic_write_text(path, table_text(table, **options))


def _missing(value) -> bool:
    """None, NaN (any float type) or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:  # pandas.NA: its comparisons are NA
        return True


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
