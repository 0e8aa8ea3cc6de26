"""The most recent clock changes of Europe/London, so DST tests stay inside ingest's 400-day window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def _last_sunday(year: int, month: int) -> date:
    day = date(year, month + 1, 1) - timedelta(days=1)
    return day - timedelta(days=(day.weekday() + 1) % 7)


def recent_clock_changes(now: datetime) -> tuple[date, date]:
    """(spring-forward Sunday, fall-back Sunday) of London, each the latest at least 3 days before ``now``."""
    today = now.astimezone(UTC).date()

    def latest(month: int) -> date:
        day = _last_sunday(today.year, month)
        return day if day <= today - timedelta(days=3) else _last_sunday(today.year - 1, month)

    return latest(3), latest(10)
