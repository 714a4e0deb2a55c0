"""Progress lines of long jobs: one duration format and one time-left estimate.

Every command that reports progress (``synthseg-bids segment``, the BIDS-App's
participant level, the training loop's epoch log) formats durations with
:func:`format_duration` and estimates the time left with :class:`Progress`, the mean
duration of the items finished so far times the items left.

Examples
--------
>>> format_duration(12.44), format_duration(87), format_duration(7530)
('12.4 s', '1 m 27 s', '2 h 5 m')
>>> progress = Progress(total=3)
>>> progress.advance(10.0)
'10.0 s (eta 20.0 s)'
>>> progress.advance(20.0)
'20.0 s (eta 15.0 s)'
>>> progress.remaining, progress.eta()
(1, 15.0)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``12.4 s`` under a minute, ``1 m 27 s`` under an hour, else ``2 h 5 m``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} m {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} m"


@dataclass
class Progress:
    """Items finished out of ``total`` and the time they took.

    Parameters
    ----------
    total
        Number of items this run has to do (items skipped before starting not counted).
    """

    total: int
    finished: int = 0
    spent: float = 0.0

    @property
    def remaining(self) -> int:
        return max(self.total - self.finished, 0)

    def eta(self) -> float:
        """Seconds left: mean seconds per finished item times the items left (0 before any)."""
        return self.spent / self.finished * self.remaining if self.finished else 0.0

    def advance(self, seconds: float) -> str:
        """Count one finished item that took ``seconds``; returns ``"<seconds> (eta <left>)"``."""
        self.finished += 1
        self.spent += seconds
        return f"{format_duration(seconds)} (eta {format_duration(self.eta())})"
