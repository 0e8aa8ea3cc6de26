"""The history page's time windows: named ranges and custom local days, in the farm's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

RANGES: Final = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "1y": timedelta(days=365),
}
RANGE_LABELS: Final = {"24h": "24 h", "7d": "7 days", "30d": "30 days", "1y": "1 year", "season": "This season"}
DEFAULT_RANGE: Final = "7d"
MAX_DAYS: Final = 3660  # ten years: more than any farm keeps raw, and still one rollup query


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)`` in UTC, and the farm-local days it covers (``last_day`` inclusive)."""

    start: datetime
    end: datetime
    first_day: date
    last_day: date


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first moment of ``day`` in ``zone`` (midnight exists in every zone Furrow's farms use; fold 0 if twice)."""
    return datetime.combine(day, time(), tzinfo=zone)


def days_window(*, first: date, last: date, zone: ZoneInfo) -> Window:
    """Whole local days ``first`` to ``last`` inclusive: 23- and 25-hour days included as they are."""
    return Window(local_midnight(first, zone), local_midnight(last + timedelta(days=1), zone), first, last)


def range_window(*, key: str, now: datetime, zone: ZoneInfo, season_start: date | None) -> Window:
    """A named range ending now; ``season`` runs from ``season_start`` (1 January of this local year without one)."""
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if key == "season":
        today = now.astimezone(zone).date()
        first = season_start if season_start and season_start <= today else date(today.year, 1, 1)
        start = local_midnight(first, zone)
    else:
        start = end - RANGES.get(key, RANGES[DEFAULT_RANGE])
    return Window(start, end, start.astimezone(zone).date(), (end - timedelta(microseconds=1)).astimezone(zone).date())
