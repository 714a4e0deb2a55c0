"""Files written through the atomic helpers get the mode of a plain ``open()`` under the umask.

``tempfile.mkstemp`` creates files with mode 0600 whatever the umask; renaming such a
file into place made every output unreadable for colleagues on shared storage. Each
check runs in a subprocess with its own umask (the test process's umask is never
changed) and compares with a file the same process created with ``open(path, "w")``,
the independent reference, as well as with the expected constant. Tests run as root
here, so modes are compared, not access.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

UMASKS = {0o022: 0o644, 0o077: 0o600}

_WRITE_OUTPUTS = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import numpy as np
    os.umask(int(sys.argv[2], 8))
    from synthseg_bids.core.io import atomic_path, atomic_write_text, save_image
    out = Path(sys.argv[1])
    out.mkdir()
    with open(out / "reference.txt", "w") as handle:
        handle.write("plain open()\\n")
    atomic_write_text(out / "sub" / "table.tsv", "a\\tb\\n1\\t2\\n")
    save_image(np.zeros((4, 4, 4), np.int16), np.eye(4), out / "sub" / "dseg.nii.gz")
    with atomic_path(out / "figure.png") as tmp:
        tmp.write_bytes(b"png")
    """
)


def _modes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("umask", sorted(UMASKS), ids=lambda u: f"umask{u:03o}")
def test_atomic_writers_follow_the_umask(tmp_path, umask):
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-c", _WRITE_OUTPUTS, str(out), f"{umask:o}"], check=True)
    modes = _modes(out)
    assert set(modes) == {"reference.txt", "sub/table.tsv", "sub/dseg.nii.gz", "figure.png"}  # no temporaries left
    reference = modes.pop("reference.txt")
    assert reference == UMASKS[umask]
    assert modes == {name: reference for name in modes}, {k: oct(v) for k, v in modes.items()}


def test_replacing_a_file_takes_the_new_files_mode(tmp_path):
    """An earlier 0600 output (written by the old code) is replaced by a normal-mode file."""
    target = tmp_path / "out" / "old.tsv"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o600)
    code = ("import os, sys; os.umask(0o022); from synthseg_bids.core.io import atomic_write_text; "
            "atomic_write_text(sys.argv[1], 'new\\n')")
    subprocess.run([sys.executable, "-c", code, str(target)], check=True)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@pytest.mark.parametrize("umask", sorted(UMASKS), ids=lambda u: f"umask{u:03o}")
def test_example_dataset_files_follow_the_umask(tmp_path, umask):
    """``synthseg-bids-example`` (the console script) writes every file with the umask's mode."""
    exe = shutil.which("synthseg-bids-example")
    command = [exe] if exe else [sys.executable, "-m", "synthseg_bids.cli.example_data"]
    out = tmp_path / "example"
    subprocess.run([*command, str(out), "--resolution", "8"], check=True, capture_output=True,
                   preexec_fn=lambda: os.umask(umask))
    modes = _modes(out)
    assert "dataset_description.json" in modes and any(name.endswith("_T1w.nii.gz") for name in modes)
    assert json.loads((out / "dataset_description.json").read_text())["BIDSVersion"]
    wrong = {name: oct(mode) for name, mode in modes.items() if mode != UMASKS[umask]}
    assert wrong == {}
