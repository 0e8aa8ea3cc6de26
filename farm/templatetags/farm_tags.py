"""Small template helpers of the farm and account pages."""

from __future__ import annotations

from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def minutes(value: timedelta | None) -> str:
    """A lockout's cool-off as people say it: "15 minutes", "1 minute"."""
    if value is None:
        return "a few minutes"
    n = max(1, round(value.total_seconds() / 60))
    return f"{n} minute{'s' if n != 1 else ''}"
