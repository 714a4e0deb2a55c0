"""Caches without a writable home folder (any uid in a container): a private temporary folder, removed at exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from synthseg_bids.cli.user_caches import CACHE_VARIABLES, home_is_writable, redirect_caches_without_home

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def restored_environment():
    """The function under test sets variables that monkeypatch.delenv of an unset name would not undo: the
    whole environment and tempfile's folder are restored, so no later test sees the removed private folder."""
    saved, saved_tempdir = dict(os.environ), tempfile.tempdir
    yield
    os.environ.clear()
    os.environ.update(saved)
    tempfile.tempdir = saved_tempdir


def test_writable_home_is_left_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert home_is_writable()
    assert redirect_caches_without_home() is None
    assert not any(name in os.environ for name in CACHE_VARIABLES)


def test_missing_home_sends_unset_caches_to_one_private_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "missing"))
    for name in CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mine"))  # set by the user: kept
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("TMPDIR", raising=False)  # restored after the test
    assert not home_is_writable()
    folder = redirect_caches_without_home()
    assert folder.parent == tmp_path and folder.stat().st_mode & 0o777 == 0o700
    assert os.environ["TMPDIR"] == tempfile.gettempdir() == str(folder / "tmp")
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "mine")
    assert {name: Path(os.environ[name]).parent for name in CACHE_VARIABLES if name != "MPLCONFIGDIR"} == {
        name: folder for name in CACHE_VARIABLES if name != "MPLCONFIGDIR"}


def test_no_home_at_all_gets_the_private_folder_as_home(monkeypatch, tmp_path):
    """A uid without a passwd entry and no $HOME: ``~`` does not expand (pybids' ``Path.home()`` would fail)."""
    import pwd

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME")
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    for name in CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("TMPDIR", raising=False)
    assert os.path.expanduser("~") == "~"
    folder = redirect_caches_without_home()
    assert Path.home() == folder and folder.parent == tmp_path
    assert Path(os.environ["KERAS_HOME"]).parent == folder


def test_libraries_write_their_caches_there_and_it_is_removed_at_exit(tmp_path):
    """Matplotlib and Keras, imported after the call, use the folder; nothing is left behind."""
    code = ("import json\nfrom synthseg_bids.cli.user_caches import redirect_caches_without_home\n"
            "folder = redirect_caches_without_home()\n"
            "import tempfile, matplotlib.pyplot, keras.src.backend.config as c\n"
            "left = tempfile.NamedTemporaryFile(delete=False).name  # as AutoGraph's generated modules\n"
            "print(json.dumps([str(folder), matplotlib.get_configdir(), c.keras_home(), left]))")
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARIABLES}
    env.update(HOME=str(tmp_path / "missing"), TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    folder, mpl, keras_home, left = json.loads(proc.stdout.splitlines()[-1])
    assert Path(mpl).parent == Path(folder) and Path(keras_home).parent == Path(folder)
    assert Path(left).parent == Path(folder) / "tmp"
    assert not Path(folder).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd"] and not any(work.iterdir())
