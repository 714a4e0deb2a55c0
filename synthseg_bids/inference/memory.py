"""Memory the process may still use, and the refusal of outputs that cannot fit in it.

The label map on the input grid needs one input-sized array plus bounded slabs whatever
the number of structures (:func:`~synthseg_bids.core.resample.resample_posteriors` takes
the argmax slab by slab), but posteriors on the input grid need ``4 x K`` bytes per voxel: 17.7 GB for a
0.5 mm 512^3 scan and 33 structures. Rather than let the kernel's OOM killer end the
process half-way (no message, other scans lost), :func:`check_posteriors_fit` refuses such a
request before any work, naming the scan and the figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..core.io import ImageError

__all__ = ["available_memory_bytes", "check_posteriors_fit", "posteriors_bytes"]

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
