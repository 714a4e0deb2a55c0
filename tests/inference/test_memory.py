"""Available memory and the refusal of posteriors that cannot fit in it."""

from __future__ import annotations

import os

import pytest

from synthseg_bids.core.io import ImageError
from synthseg_bids.inference import memory


def test_posteriors_bytes_closed_form():
    assert memory.posteriors_bytes((512, 512, 512), 33) == 17_716_740_096  # 4 B x 512^3 x 33
    assert memory.posteriors_bytes((2, 3, 4, 1), 5) == 4 * 24 * 5


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="needs Linux /proc/meminfo")
def test_available_memory_is_positive_and_below_physical_memory():
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    available = memory.available_memory_bytes()
    assert available is not None and 0 < available <= physical


def test_cgroup_limit_lowers_the_available_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "_CGROUP", tmp_path)
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 8 * 2**30)
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("400000\n")
    assert memory.available_memory_bytes() == 600_000
    (tmp_path / "memory.max").write_text("max\n")  # no limit
    assert memory.available_memory_bytes() == 8 * 2**30
    (tmp_path / "memory.current").write_text("2000000\n")
    (tmp_path / "memory.max").write_text("1000000\n")  # over the limit already
    assert memory.available_memory_bytes() == 0


def test_check_refuses_posteriors_beyond_available_memory(monkeypatch):
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 20 * 2**30)
    memory.check_posteriors_fit("small.nii.gz", (256, 256, 256), 33)  # 2 x 2.2 GB: fits
    with pytest.raises(ImageError) as err:
        memory.check_posteriors_fit("big_T1w.nii.gz", (512, 512, 512), 33)  # 2 x 17.7 GB: does not
    message = str(err.value)
    assert message.startswith("big_T1w.nii.gz: posteriors on its 512x512x512 grid (33 structures)")
    assert "need about 33.0 GB, more than the 20.0 GB" in message and "without posteriors" in message


def test_unknown_available_memory_does_not_refuse(monkeypatch):
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: None)
    memory.check_posteriors_fit("big.nii.gz", (512, 512, 512), 33)
