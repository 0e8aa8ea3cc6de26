"""Small template helpers of the farm and account pages."""

from __future__ import annotations

from datetime import timedelta

from django import template

from farm.models import Farm
from farm.permissions import abilities

register = template.Library()


@register.filter
def minutes(value: timedelta | None) -> str:
    """A lockout's cool-off as people say it: "15 minutes", "1 minute"."""
    if value is None:
        return "a few minutes"
    n = max(1, round(value.total_seconds() / 60))
    return f"{n} minute{'s' if n != 1 else ''}"


@register.inclusion_tag("farm/_farm_nav.html", takes_context=True)
def farm_tabs(context: template.Context, farm: Farm, active: str) -> dict[str, object]:
    """The farm's tabs for any page that has ``farm`` (the dashboard included), as the viewer's role allows."""
    return {"farm": farm, "can": abilities(context["request"].user, farm), "active": active}
