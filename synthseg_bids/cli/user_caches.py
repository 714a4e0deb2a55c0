"""Caches and configurations of the libraries for a user without a writable home folder.

A container runs as any uid (``docker run -u``, Apptainer's calling user): ``$HOME`` may be
unset, ``/`` or a read-only folder, and the uid may have no passwd entry, so ``~`` does not
expand (pybids then fails at import: ``Path.home()``). Matplotlib (font cache), Keras
(``keras.json``) and the BIDS validator (Deno's cache) write below ``~`` by default; without
a writable home they go to one private temporary folder of this process, removed when it
exits, which is also ``$HOME`` when there is none, and ``$TMPDIR`` (TensorFlow's AutoGraph
leaves its generated modules in the temporary folder, and Nipype's workers end without
cleaning up). A writable home is left alone.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["CACHE_VARIABLES", "TEMP_VARIABLE", "home_is_writable", "redirect_caches_without_home"]

#: Environment variables naming the per-user cache/config folders the app's libraries write to.
CACHE_VARIABLES = ("MPLCONFIGDIR", "KERAS_HOME", "XDG_CACHE_HOME", "DENO_DIR")
#: Where :mod:`tempfile` puts files; the private folder's ``tmp`` for this process and its workers.
TEMP_VARIABLE = "TMPDIR"


def home_is_writable() -> bool:
    """Whether ``~`` expands to an existing folder this process can write to."""
    home = os.path.expanduser("~")
    return home != "~" and os.path.isdir(home) and os.access(home, os.W_OK | os.X_OK)


def redirect_caches_without_home() -> Path | None:
    """Without a writable home, point the unset :data:`CACHE_VARIABLES` to a private temporary folder.

    ``$HOME`` too when ``~`` does not expand; ``$TMPDIR`` (and :mod:`tempfile`'s folder) to
    its ``tmp``. Call before pybids, Matplotlib, Keras or Nipype
    are imported; worker processes inherit the variables. Returns the folder (removed at exit
    of this process), or None when the home folder is writable.
    """
    if home_is_writable():
        return None
    folder = Path(tempfile.mkdtemp(prefix="synthseg-bids-home-"))
    if os.path.expanduser("~") == "~":
        os.environ["HOME"] = str(folder)
    for name in CACHE_VARIABLES:
        os.environ.setdefault(name, str(folder / name.lower()))
    (folder / "tmp").mkdir()
    os.environ[TEMP_VARIABLE] = tempfile.tempdir = str(folder / "tmp")
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(folder, ignore_errors=True))
    return folder
