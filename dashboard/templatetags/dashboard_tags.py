"""Filters for the farm dashboard templates (thin wrappers over ``dashboard.formatting``)."""

from __future__ import annotations

from datetime import datetime

from django import template

from dashboard import formatting, payloads
from dashboard.cards import MetricSummary

register = template.Library()


@register.filter
def reading(value: float | None, unit: str = "") -> str:
    return formatting.reading_text(value, unit)


@register.filter
def plain(value: float) -> str:
    return formatting.plain_number(value)


@register.filter
def epoch_ms(moment: datetime | None) -> int | str:
    ms = payloads.ms(moment)
    return "" if ms is None else ms


@register.filter
def state_label(state: str) -> str:
    return formatting.STATE_LABELS.get(state, state)


@register.filter
def state_badge(state: str) -> str:
    return formatting.STATE_BADGES.get(state, "badge-neutral")


@register.filter
def device_state_label(state: str) -> str:
    return formatting.DEVICE_STATE_LABELS.get(state, state)


@register.filter
def device_state_badge(state: str) -> str:
    return formatting.DEVICE_STATE_BADGES.get(state, "badge-neutral")


@register.filter
def range_text(summary: MetricSummary) -> str:
    return formatting.range_text(summary.low, summary.high)


@register.filter
def attention(count: int) -> str:
    return formatting.attention_text(count)


@register.filter
def signal_bars(rssi: float | None) -> int:
    return formatting.signal_bars(rssi)


@register.simple_tag
def age(moment: datetime | None, now: datetime) -> str:
    return formatting.age_text(moment, now)


@register.filter
def opt(value: float | None) -> str:
    """A number for a data- attribute; empty when unknown."""
    return "" if value is None else repr(float(value))
