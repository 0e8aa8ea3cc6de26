"""Quiet hours as pure functions of an instant, a time zone and a local start and end.

The window is local wall-clock time on the farm, so it follows daylight-saving changes: 22:00
to 06:30 stays 22:00 to 06:30 local, however many hours that is in UTC that night. A window may
cross midnight (start after end).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


def in_quiet_hours(*, now: datetime, tz: ZoneInfo, start: time, end: time) -> bool:
    local = now.astimezone(tz).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_hours_end(*, now: datetime, tz: ZoneInfo, start: time, end: time) -> datetime:
    """The first instant after ``now`` at which the local clock reads ``end`` (UTC)."""
    local_now = now.astimezone(tz)
    for days in (0, 1, 2):
        day = local_now.date() + timedelta(days=days)
        # Built from the wall-clock reading, so a DST change in between is accounted for; a
        # reading that does not exist that day (spring forward) resolves to the hour after.
        candidate = datetime.combine(day, end, tzinfo=tz).astimezone(UTC)
        if candidate > now:
            return candidate
    raise AssertionError("a wall-clock time recurs within two days")
