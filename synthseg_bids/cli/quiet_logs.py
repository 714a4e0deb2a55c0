"""Keep TensorFlow's native start-up messages out of the user's terminal.

What prints what (TensorFlow 2.21 on a CPU machine, read from ``synthseg-bids ...
--nprocs 2`` stderr; every line once per process that imports TensorFlow, so once per
Nipype MultiProc worker):

- ``WARNING: All log messages before absl::InitializeLog() is called are written to
  STDERR``: the C++ absl logging library, once per TensorFlow shared library loaded;
- ``I0000 ... port.cc:153] oneDNN custom operations are on ...``: TensorFlow's CPU
  feature guard, while the library loads (oneDNN stays on; only the notice goes);
- ``I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine``: the CUDA
  runtime stub, while the library loads;
- ``E0000 ... cuda_platform.cc:52] failed call to cuInit: ... (303)``: the first device
  query on a machine without a GPU driver (an absl ERROR, but harmless).

The first three are written by static initialisers before ``TF_CPP_MIN_LOG_LEVEL`` is
read, so no environment variable silences them. :func:`quiet_native_logs` therefore
routes file descriptor 2 of this process through a pipe for the duration of a command
and drops those lines (absl's ``I``/``W`` lines and the known harmless ``E`` lines);
every other byte reaches the real stderr unchanged. Worker processes forked (or
started) by Nipype inherit descriptor 2, so their messages are filtered too. It also
sets ``TF_CPP_MIN_LOG_LEVEL=2`` (TensorFlow's own INFO and WARNING logs, for processes
outside the pipe such as SLURM jobs) unless the user set it.

With ``-vv`` nothing is filtered and ``TF_CPP_MIN_LOG_LEVEL`` defaults to ``0``.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import threading
from typing import Iterator, Sequence

__all__ = ["is_noise", "quiet_native_logs", "verbosity_from_argv"]

#: absl's line prefix: severity letter, MMDD, time, thread id, file:line].
_ABSL_LINE = re.compile(rb"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w.\-/]+:\d+\] ")
_ABSL_PREINIT = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
#: absl ERROR lines that TensorFlow prints on every machine without a (working) GPU.
_HARMLESS_ERRORS = (
    re.compile(rb"failed call to cuInit"),
    re.compile(rb"Unable to register cu(DNN|FFT|BLAS) factory"),
)
#: Verbosity (number of ``-v``) from which every native line is shown.
SHOW_ALL_VERBOSITY = 2


def is_noise(line: bytes) -> bool:
    """Whether a stderr line (without its newline) is TensorFlow/absl start-up noise.

    >>> is_noise(b"I0000 00:00:1796.27 12944 cudart_stub.cc:31] Could not find cuda drivers on your machine.")
    True
    >>> is_noise(b"F0000 00:00:1796.27 12944 x.cc:1] Check failed: fatal"), is_noise(b"ValueError: bad scan")
    (False, False)
    """
    line = line.rstrip(b"\r")
    if line == _ABSL_PREINIT:
        return True
    match = _ABSL_LINE.match(line)
    if not match:
        return False
    severity = match.group(1)
    if severity in (b"I", b"W"):
        return True
    return severity == b"E" and any(p.search(line) for p in _HARMLESS_ERRORS)


def verbosity_from_argv(argv: Sequence[str]) -> int:
    """Number of ``-v`` / ``--verbose`` given (``-vv`` counts 2), before any ``--``."""
    count = 0
    for arg in argv:
        if arg == "--":
            break
        if arg == "--verbose":
            count += 1
        elif re.fullmatch(r"-v+", arg):
            count += len(arg) - 1
    return count


def _forward(read_fd: int, out_fd: int, keep_all: bool) -> None:
    """Copy lines from ``read_fd`` to ``out_fd`` until EOF, dropping noise lines.

    A partial line is held back at most 0.2 s (so a prompt or a progress bar without
    newline still shows) and then written as it is.
    """
    pending = b""
    while True:
        ready, _, _ = select.select([read_fd], [], [], 0.2)
        if not ready:
            if pending:
                os.write(out_fd, pending)
                pending = b""
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = [line + b"\n" for line in lines if keep_all or not is_noise(line)]
        if kept:
            os.write(out_fd, b"".join(kept))
    if pending and (keep_all or not is_noise(pending)):
        os.write(out_fd, pending)


def _flush_stderr() -> None:
    if sys.stderr is not None:
        sys.stderr.flush()


@contextlib.contextmanager
def quiet_native_logs(verbosity: int = 0) -> Iterator[None]:
    """Filter TensorFlow/absl start-up noise from stderr (descriptor 2) inside the block.

    Call it before anything imports TensorFlow. Also sets ``TF_CPP_MIN_LOG_LEVEL``
    (``2``; ``0`` with ``verbosity >= 2``) unless already set. Descriptor 2 is restored
    and every filtered byte written before the block exits.
    """
    keep_all = verbosity >= SHOW_ALL_VERBOSITY
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if keep_all else "2")
    if keep_all:
        yield
        return
    _flush_stderr()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (closed descriptor): nothing to filter
        yield
        return
    read_fd, write_fd = os.pipe()
    thread = threading.Thread(target=_forward, args=(read_fd, saved, keep_all), name="quiet-native-logs",
                              daemon=True)
    thread.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        _flush_stderr()
        os.dup2(saved, 2)  # closes this process's last copy of the pipe's write end
        # worker processes that outlive the command may still hold the write end: wait a little, not forever
        thread.join(timeout=5.0)
        if not thread.is_alive():
            os.close(read_fd)
            os.close(saved)
