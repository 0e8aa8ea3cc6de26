"""The one seam between ingest and everything downstream of it (DESIGN.md §1).

The ingest pipeline knows nothing about dashboards, channel layers or alert
rules. After each batch commits it hands a ``BatchOutcome`` to every
registered hook. Hooks are registered by the apps that care (e.g.
``dashboard.apps.DashboardConfig.ready``) and must take the whole batch at
once: no per-reading work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredReading:
    farm_id: int
    device_id: int
    sensor_id: int
    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """A device's state after the batch: status, last seen and link health."""

    farm_id: int
    device_id: int
    status: str
    last_seen: datetime | None
    battery: float | None = None
    rssi: float | None = None
    snr: float | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    readings: list[StoredReading] = field(default_factory=list)
    devices: list[DeviceChange] = field(default_factory=list)

    def farm_ids(self) -> set[int]:
        return {r.farm_id for r in self.readings} | {d.farm_id for d in self.devices}


BatchHook = Callable[[BatchOutcome], None]
_hooks: list[BatchHook] = []


def register_batch_hook(hook: BatchHook) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


def unregister_batch_hook(hook: BatchHook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


def run_batch_hooks(outcome: BatchOutcome) -> None:
    """Call every hook; one failing hook never stops the others or the ingest loop.

    Call this from ``transaction.on_commit`` so nothing downstream sees
    uncommitted data.
    """
    for hook in list(_hooks):
        try:
            hook(outcome)
        except Exception:
            logger.exception("batch hook %s failed", getattr(hook, "__qualname__", hook))
