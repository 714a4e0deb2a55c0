"""One duration format and one time-left estimate for every progress line."""

from __future__ import annotations

import pytest

from synthseg_bids.core.progress import Progress, format_duration


@pytest.mark.parametrize("seconds, text", [
    (0.04, "0.0 s"), (12.44, "12.4 s"), (59.94, "59.9 s"), (60, "1 m 0 s"), (87.4, "1 m 27 s"),
    (3599.4, "59 m 59 s"), (3600, "1 h 0 m"), (7530, "2 h 5 m"), (90061, "25 h 1 m"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_eta_is_the_mean_item_time_times_the_items_left():
    progress = Progress(total=4)
    assert progress.eta() == 0.0 and progress.remaining == 4  # nothing finished: no estimate yet
    assert progress.advance(30.0) == "30.0 s (eta 1 m 30 s)"  # 30 s x 3 left
    assert progress.advance(90.0) == "1 m 30 s (eta 2 m 0 s)"  # mean 60 s x 2 left
    progress.advance(60.0)
    assert progress.advance(60.0) == "1 m 0 s (eta 0.0 s)"
    assert progress.remaining == 0 and progress.spent == 240.0

