"""``{{ seconds|duration }}`` in templates: "28 s", "1.5 min"."""

from __future__ import annotations

from datetime import timedelta

from django import template

from apps.core.durations import duration_text

register = template.Library()


@register.filter
def duration(value: float | timedelta | None) -> str:
    return duration_text(value)
