"""Template filters of the alerts pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def reading(value: float | None) -> str:
    """A reading as people write it: 0.43, 3.1, 27 (two decimals at most, no trailing zeros)."""
    return "—" if value is None else f"{round(value, 2):g}"


@register.filter
def roles_told(roles: list[str]) -> str:
    """A rule's roles as a list of people: ["owner", "manager"] → "owners, managers"."""
    return ", ".join(f"{role}s" for role in roles)
