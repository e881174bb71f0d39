from __future__ import annotations

from datetime import timedelta

import pytest

from apps.core.durations import duration_text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (2.35, "2.4 s"), (28.4, "28 s"), (89, "89 s"), (90, "1.5 min"), (600, "10 min"),
     (5400, "1.5 h"), (4 * 86400, "4 days"), (-30, "-30 s")],
)  # fmt: skip
def test_durations_read_as_words(seconds, text):
    assert duration_text(seconds) == text
    assert duration_text(timedelta(seconds=seconds)) == text


def test_no_duration_is_a_dash():
    assert duration_text(None) == "-"
