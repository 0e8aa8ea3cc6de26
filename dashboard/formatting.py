"""How the dashboard writes numbers and ages; ``dashboard.js`` mirrors each function."""

from __future__ import annotations

from datetime import datetime

STATE_LABELS = {
    "fresh": "Fresh",
    "stale": "Stale",
    "offline": "Offline",
    "out_of_range": "Out of range",
    "no_data": "No data",
}
STATE_BADGES = {
    "fresh": "badge-online",
    "stale": "badge-warn",
    "offline": "badge-offline",
    "out_of_range": "badge-range",
    "no_data": "badge-never",
}

# A device's one state; "ok" is not shown (a badge on every healthy device is noise).
DEVICE_STATE_LABELS = {
    "ok": "",
    "stale": "Stale",
    "offline": "Offline",
    "out_of_range": "Out of range",
    "never_seen": "Never seen",
}
DEVICE_STATE_BADGES = {
    "ok": "badge-online",
    "stale": "badge-warn",
    "offline": "badge-offline",
    "out_of_range": "badge-range",
    "never_seen": "badge-never",
}


# Units whose readings carry no meaningful fraction on a dashboard (a bearing, irradiance).
WHOLE_UNITS = frozenset({"°", "W/m²"})


def reading_text(value: float | None, unit: str = "") -> str:
    """Fixed decimals by magnitude so a ticking value does not jitter in width (JS: ``formatValue``)."""
    if value is None:
        return "—"
    magnitude = abs(value)
    whole = magnitude >= 1000 or unit in WHOLE_UNITS
    decimals = 0 if whole else 1 if magnitude >= 1 or value == 0 else 2
    return f"{value:,.{decimals}f}"


def range_text(low: float | None, high: float | None) -> str:
    """A metric across devices: ``23.1–31.4``, one value when they agree, ``—`` if none (JS: ``rangeText``)."""
    if low is None or high is None:
        return "—"
    if reading_text(low) == reading_text(high):
        return reading_text(low)
    return f"{reading_text(low)}–{reading_text(high)}"


def attention_text(count: int) -> str:
    """A field's devices that need a look (JS: ``attentionText``)."""
    if count == 0:
        return "All devices fine"
    return f"{count} device needs attention" if count == 1 else f"{count} devices need attention"


def plain_number(value: float) -> str:
    """A bound as people write it: ``0``, ``100``, ``-30``, ``0.5``."""
    return f"{value:g}"


def age_text(moment: datetime | None, now: datetime) -> str:
    """``just now``, ``12 s ago``, ``4 min ago``, ``2 h 5 min ago``, ``3 d 4 h ago`` (JS: ``formatAge``)."""
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{seconds} s ago"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min ago"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} h {minutes % 60} min ago"
    return f"{hours // 24} d {hours % 24} h ago"


def signal_bars(rssi: float | None) -> int:
    """0–4 bars from a LoRa RSSI in dBm (JS: ``signalBars``)."""
    if rssi is None:
        return 0
    for bars, floor in ((4, -90.0), (3, -105.0), (2, -115.0)):
        if rssi >= floor:
            return bars
    return 1
