"""Segmenting the next scan in a background thread while the caller finishes the current one.

The one way scans overlap, for callers that segment scans one at a time, in an order
known in advance, with other work between two scans: ``synthseg-bids segment`` on a folder
or list, which writes each scan's files; and a Nipype Linear run, where each scan's
segmentation node writes its files and then the scan's later nodes (tables, figure,
derivatives) run before the next scan's node. Right after a scan's result, the caller starts the next scan
(:meth:`LookAhead.start`); that scan is then read, pre-processed and run through the
network (on a GPU: the network works) while this scan's files are written, and the next
:meth:`LookAhead.take` hands its result over.

At most one scan is ahead, so at most two scans are in memory: the one being finished by
the caller and the one ahead. A scan is taken only if it is the same file, unchanged
(resolved path, size and modification time) and asked with the same options; anything
else drops the scan ahead (after it finishes, so that two never run at once; logged at
INFO), and the caller segments what it asked for itself.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Hashable

__all__ = ["LookAhead", "scan_key"]

LOGGER = logging.getLogger(__name__)


def scan_key(scan: Any, options: Hashable = None) -> tuple | None:
    """What identifies a scan file and its options: resolved path, size, mtime (ns), options.

    ``None`` for anything that is not an existing file (an in-memory image, a missing path).
    """
    if not isinstance(scan, (str, os.PathLike)):
        return None
    try:
        path = os.path.realpath(scan)
        stat = os.stat(path)
    except OSError:
        return None
    return path, stat.st_size, stat.st_mtime_ns, options


class LookAhead:
    """At most one scan segmented in a background thread, kept until it is asked for.

    Parameters
    ----------
    name : str
        Prefix of the background thread's name.
    """

    def __init__(self, name: str = "synthseg-ahead"):
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._key: tuple | None = None
        self._future: Future | None = None

    def start(self, scan: str | os.PathLike, options: Hashable, work: Callable[[], Any]) -> bool:
        """Run ``work`` (segmenting ``scan`` with ``options``) in the background thread.

        A scan already ahead and not taken is dropped first (see :meth:`take`). Returns
        ``False``, and starts nothing, when ``scan`` is not an existing file: the caller's
        own segmentation of it reports the problem when it gets there.
        """
        key = scan_key(scan, options)
        if key is None:
            return False
        self.take(None)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=self._name)
        self._key, self._future = key, self._pool.submit(work)
        return True

    def take(self, scan: Any, options: Hashable = None) -> Future | None:
        """The future of ``scan``'s segmentation if it is the one ahead; else ``None``.

        A scan ahead that is not ``scan`` is waited for and dropped, with an INFO message
        (its work was for nothing: the scans did not come in the announced order).
        """
        if self._future is None:
            return None
        future, key = self._future, self._key
        self._future = self._key = None
        if key == scan_key(scan, options):
            return future
        future.exception()  # waits: never two scans at once
        LOGGER.info("%s was segmented ahead, but %s was asked for next (another order than announced, e.g. a "
                    "result reused from Nipype's cache); the scan ahead is dropped", key[0],
                    scan if isinstance(scan, (str, os.PathLike)) else "another scan")
        return None
