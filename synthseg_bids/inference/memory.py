"""Memory the process may still use, and the refusal of outputs that cannot fit in it.

The label map on the input grid needs one input-sized array plus bounded slabs whatever
the number of structures (:func:`~synthseg_bids.core.resample.resample_posteriors` takes
the argmax slab by slab), but posteriors on the input grid need ``4 x K`` bytes per voxel: 17.7 GB for a
0.5 mm 512^3 scan and 33 structures. Rather than let the kernel's OOM killer end the
process half-way (no message, other scans lost), :func:`check_posteriors_fit` refuses such a
request before any work, naming the scan and the figures.

:func:`segmentation_memory_bytes` estimates the peak memory of segmenting a scan from its
grid alone (shape and affine, known from the header when a workflow is built), so that the
segmentation node declares a true ``mem_gb`` and Nipype's MultiProc with ``--mem-gb`` never
starts more scans than fit; its coefficients are measured by ``benchmarks/bench_memory.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.io import ImageError

__all__ = [
    "available_memory_bytes",
    "check_posteriors_fit",
    "network_window_voxels",
    "posteriors_bytes",
    "segmentation_mem_gb",
    "segmentation_memory_bytes",
]

#: cgroup v2 files of this process's memory limit and usage (containers, SLURM jobs).
_CGROUP = Path("/sys/fs/cgroup")


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        used = int((_CGROUP / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def available_memory_bytes() -> int | None:
    """Bytes this process can still allocate: the machine's available memory, or less under a
    cgroup (v2) limit. ``None`` where neither can be read (not Linux)."""
    known = [v for v in (_meminfo_available(), _cgroup_headroom()) if v is not None]
    return min(known) if known else None


def posteriors_bytes(shape: Sequence[int], n_channels: int) -> int:
    """Size of float32 posteriors of ``n_channels`` structures on a grid of ``shape``."""
    n_voxels = 1
    for size in shape[:3]:
        n_voxels *= int(size)
    return 4 * n_voxels * int(n_channels)


def check_posteriors_fit(path: str | os.PathLike | None, shape: Sequence[int], n_channels: int) -> None:
    """Raise :class:`~synthseg_bids.core.io.ImageError` when the posteriors of a scan cannot fit
    in the available memory (with a copy's margin: resampling and writing need ~2x)."""
    need = 2 * posteriors_bytes(shape, n_channels)
    available = available_memory_bytes()
    if available is None or need <= available:
        return
    grid = "x".join(str(int(s)) for s in shape[:3])
    raise ImageError(
        path or "<array>",
        f"posteriors on its {grid} grid ({n_channels} structures) need about {_size(need)}, more than "
        f"the {_size(available)} of memory available; segment it without posteriors",
    )


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MB"


#: Largest head box (mm, RAS axes) the network window can hold without a crop: the head
#: extents of the 15 whole-head training label maps (up to 170 x 232 x 248 mm, necks
#: included), rounded up to the network's size multiple.
HEAD_BOX_MM = (176.0, 240.0, 256.0)

#: Coefficients of :func:`segmentation_memory_bytes`, measured with
#: ``benchmarks/bench_memory.py`` (shipped model, default settings, CPU): bytes of the
#: process without a scan; per voxel of the input grid (image, label map); per voxel of the
#: network window (activations, the first pass's posteriors while the flipped pass runs in
#: slabs, the smoothed slabs); per voxel of the window again when the posteriors leave the
#: device (interpolation onto an input grid that is not the model's, or posteriors asked
#: for); per voxel and channel of posteriors on the input grid.
#: Fit (2-core CPU, TensorFlow 2.21, oneDNN; peaks of a fresh process, whole-window passes):
#: the MNI152 T1 cropped to 64^3, 96^3 and 128^3 (1.04, 1.49, 2.19 GiB), on its own 1 mm grid
#: (3.56-3.66 GiB; window 160 x 192 x 160), its head enlarged 1.15x (4.80 GiB; window
#: 176 x 224 x 192), zero-padded to 256^3 (3.57 GiB): a line above every one of these, 1.6 GiB
#: at none and 450 B per window voxel, 9 B per input voxel; at 2 mm and 0.7 mm (4.09 and
#: 4.31 GiB: +0.43 GiB over 1 mm, 90 B per window voxel, for the posteriors leaving the
#: device); with posteriors on the 1 mm and 0.8 mm grids (5.07 and 6.25 GiB), 5 B per voxel
#: and channel (the float32 posteriors themselves, 4 B, must fit). The window term uses
#: :func:`network_window_voxels`, a bound (the largest head), so the estimate of a
#: smaller head is above its peak. Patches (windows above ``max_voxels``) are not fitted.
BASE_BYTES = 1.6 * 2**30
INPUT_BYTES_PER_VOXEL = 9.0
WINDOW_BYTES_PER_VOXEL = 450.0
HOST_POSTERIOR_BYTES_PER_WINDOW_VOXEL = 90.0
POSTERIOR_BYTES_PER_VOXEL_CHANNEL = 5.0


def _copies_to_model_grid(affine: np.ndarray, resolution_mm: float) -> bool:
    """Whether labels move from the network window to this input grid by voxel copies: its
    axes along the world axes, voxels of ``resolution_mm`` (else the posteriors are interpolated)."""
    linear = np.abs(np.asarray(affine, dtype=float)[:3, :3])
    largest = linear.max(axis=0)
    one_axis = np.all((linear > 1e-4).sum(axis=0) == 1)
    return bool(one_axis and np.all(np.abs(largest - resolution_mm) <= 1e-3))


def network_window_voxels(
    shape: Sequence[int],
    affine: np.ndarray,
    *,
    crop: Sequence[int] | None = None,
    resolution_mm: float = 1.0,
    size_multiple: int = 16,
) -> int:
    """Upper bound of the network window's voxels for a scan, from its grid alone.

    With ``crop`` (``InferenceSettings.crop``) the window is exactly that (rounded up to
    ``size_multiple``); else it is the head's bounding box at ``resolution_mm``, which lies
    inside the scan's field of view (its RAS bounding box) and inside :data:`HEAD_BOX_MM`.
    """
    if crop is not None:
        window = np.asarray(crop, dtype=float)
    else:
        corners = np.abs(np.asarray(affine, dtype=float)[:3, :3]) @ np.asarray(shape[:3], dtype=float)
        window = np.minimum(corners, HEAD_BOX_MM) / resolution_mm  # world-axis extents of the field of view
    return int(np.prod(np.ceil(window / size_multiple - 1e-6) * size_multiple))


def segmentation_memory_bytes(
    shape: Sequence[int],
    affine: np.ndarray,
    n_channels: int,
    *,
    posteriors: bool = False,
    crop: Sequence[int] | None = None,
    resolution_mm: float = 1.0,
    size_multiple: int = 16,
) -> int:
    """Peak memory (bytes) of segmenting one scan, from its grid alone (no voxel is read).

    ``BASE + a N_in + b W (+ c W when the posteriors leave the device: posteriors asked for, or
    an input grid that is not axis-aligned at ``resolution_mm``) (+ d K N_in with posteriors)``:
    ``N_in`` voxels of the input grid, ``W`` the :func:`network_window_voxels` bound, ``K = n_channels``. The coefficients
    (module constants) are measured with ``benchmarks/bench_memory.py``; ``crop`` is
    ``InferenceSettings.crop``.
    """
    n_in = float(np.prod(np.asarray(shape[:3], dtype=float)))
    window = float(network_window_voxels(shape, affine, crop=crop, resolution_mm=resolution_mm,
                                         size_multiple=size_multiple))
    need = BASE_BYTES + INPUT_BYTES_PER_VOXEL * n_in + WINDOW_BYTES_PER_VOXEL * window
    if posteriors or not _copies_to_model_grid(affine, resolution_mm):
        need += HOST_POSTERIOR_BYTES_PER_WINDOW_VOXEL * window
    if posteriors:
        need += POSTERIOR_BYTES_PER_VOXEL_CHANNEL * int(n_channels) * n_in
    return int(need)


#: The grid of a typical scan (256^3 at 1 mm): the estimate when no scan is known.
TYPICAL_GRID = ((256, 256, 256), np.eye(4))


def segmentation_mem_gb(
    path: str | os.PathLike | None,
    *,
    posteriors: bool = False,
    crop: Sequence[int] | None = None,
    n_channels: int = 33,
) -> float:
    """:func:`segmentation_memory_bytes` of a scan file in GB, from its header only (for ``mem_gb``).

    ``path=None`` (no scan known when a workflow is built), or a header that cannot be
    read, gives the estimate of a typical 256^3 1 mm scan: the workflow still builds, and
    the segmentation node reports the reading error for that scan.
    """
    import nibabel as nib

    shape, affine = TYPICAL_GRID
    if path is not None:
        try:
            header = nib.load(os.fspath(path))
            if len(header.shape) >= 3:
                shape, affine = header.shape, header.affine
        except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError):  # the node reports it
            pass
    return segmentation_memory_bytes(shape, affine, n_channels, posteriors=posteriors, crop=crop) / 2**30
