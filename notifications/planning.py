"""The decision for one (event, channel): send now, or fold into a batch sent at a given time.

Pure: the caller gathers what the channel has had recently and passes it in. Order matters:

1. Quiet hours hold everything until they end, except critical alerts when the person lets
   them break through.
2. Anything but critical joins a batch already collecting for this channel and farm.
3. Beyond the hourly cap, anything but critical is folded into a summary sent when the hour
   frees up.
4. Within the storm window after a message about the farm, the event is folded into a batch sent
   at the window's end. A critical one pulls a batch held for later (quiet hours, the cap)
   forward to then: the person is being told now anyway, and hears what was held with it.
5. Otherwise — the first alert of a storm, a critical one included — it goes at once.
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
    pull_forward: bool = False  # an existing batch becomes due at fold_until if that is sooner


SEND_NOW = Plan(fold_until=None)


def plan_delivery(
    *, now: datetime, tz: ZoneInfo, severity: Severity, prefs: Prefs, recent: Recent, window: timedelta
) -> Plan:
    critical = severity == Severity.CRITICAL
    pending = recent.pending_batch_due
    held_until = _quiet_until(now=now, tz=tz, prefs=prefs)
    if held_until is not None and not (critical and prefs.critical_breaks_through):
        return Plan(held_until)
    if pending is not None and not critical:
        return Plan(pending)
    if prefs.hourly_cap and recent.hour_count >= prefs.hourly_cap and not critical:
        return Plan((recent.hour_oldest or now) + HOUR)
    if recent.last_farm_message_at is not None and now - recent.last_farm_message_at < window:
        return Plan(now + window, pull_forward=critical)
    if pending is not None and pending <= now + window:
        return Plan(pending)  # a storm batch due soon: a critical alert joins it
    return SEND_NOW


def _quiet_until(*, now: datetime, tz: ZoneInfo, prefs: Prefs) -> datetime | None:
    """When the quiet hours ``now`` falls in end, or None outside them."""
    start, end = prefs.quiet_start, prefs.quiet_end
    if start is None or end is None or not in_quiet_hours(now=now, tz=tz, start=start, end=end):
        return None
    return quiet_hours_end(now=now, tz=tz, start=start, end=end)
