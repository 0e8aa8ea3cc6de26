"""The decision for one (event, channel): send now, or fold into a batch sent at a given time.

Pure: the caller gathers what the channel has had recently and passes it in. Order matters:
quiet hours first (critical may break through, and then is sent at once, storm or not), then a
batch already collecting for this channel and farm (critical joins only one due within the storm
window), then the hourly cap (critical is never capped), then the storm window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from notifications.models import Severity
from notifications.quiet import in_quiet_hours, quiet_hours_end

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Prefs:
    quiet_start: time | None = None
    quiet_end: time | None = None
    critical_breaks_through: bool = True
    hourly_cap: int = 10


@dataclass(frozen=True, slots=True)
class Recent:
    """What one channel has had: messages in the last hour, the last one about this farm, a collecting batch."""

    hour_count: int = 0
    hour_oldest: datetime | None = None
    last_farm_message_at: datetime | None = None
    pending_batch_due: datetime | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    fold_until: datetime | None  # None: send now; else the batch's due time
    reason: str = ""


SEND_NOW = Plan(fold_until=None)


def plan_delivery(
    *, now: datetime, tz: ZoneInfo, severity: Severity, prefs: Prefs, recent: Recent, window: timedelta
) -> Plan:
    critical = severity == Severity.CRITICAL
    start, end = prefs.quiet_start, prefs.quiet_end
    if start is not None and end is not None and in_quiet_hours(now=now, tz=tz, start=start, end=end):
        if critical and prefs.critical_breaks_through:
            return SEND_NOW
        until = quiet_hours_end(now=now, tz=tz, start=start, end=end)
        return Plan(max(until, recent.pending_batch_due or until), "quiet hours")
    if recent.pending_batch_due is not None:
        if critical and recent.pending_batch_due > now + window:
            return SEND_NOW  # a batch held by the cap: critical does not wait an hour for it
        return Plan(recent.pending_batch_due, "joins the collecting message")
    if prefs.hourly_cap and recent.hour_count >= prefs.hourly_cap and not critical:
        return Plan((recent.hour_oldest or now) + HOUR, "hourly cap")
    if recent.last_farm_message_at is not None and now - recent.last_farm_message_at < window:
        return Plan(now + window, "many alerts at once")
    return SEND_NOW
