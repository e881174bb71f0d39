"""Durations as a merchant reads them: "28 s", "1.5 min", "2.3 h", "3.1 days"."""

from __future__ import annotations

from datetime import timedelta


def duration_text(value: float | timedelta | None, *, empty: str = "-") -> str:
    """Seconds (or a timedelta) in the largest unit that keeps the number small, one decimal above seconds."""
    if value is None:
        return empty
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 10:
        text = f"{seconds:.1f}".removesuffix(".0") + " s"
    elif seconds < 90:
        text = f"{seconds:.0f} s"
    elif seconds < 90 * 60:
        text = f"{seconds / 60:.1f}".removesuffix(".0") + " min"
    elif seconds < 36 * 3600:
        text = f"{seconds / 3600:.1f}".removesuffix(".0") + " h"
    else:
        text = f"{seconds / 86400:.1f}".removesuffix(".0") + " days"
    return sign + text
