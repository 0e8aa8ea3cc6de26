"""The seam between alert transitions and whoever shows them live (docs/architecture.md §1).

Alerts never import a delivery app: ``dashboard`` registers a listener here from its
``AppConfig.ready`` (dependencies go dashboard → alerts → sensors). Listeners get the
transitions of one committed transaction at once (fired, acknowledged, resolved), after
the commit and best effort, like the batch notifier lane: what a listener misses a client
refetches, so only what a snapshot also carries travels here.

Transitions happen in three places, and each publishes after its own commit:

- an ingest batch (``alerts.writer``): the writer leaves them on its outcome
  (``BatchOutcome.note``), and ``alerts_batch_notify`` (a batch notifier) hands them to the
  listeners on the ingest worker's notifier thread, so an ingest commit never waits on a
  listener; a batch that rolls back never reaches the notifiers, and batches the lane merges
  carry all their notes;
- the sweep and the acknowledge service: ``alert_changes_on_commit``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from farm.seams import Seam
from sensors.hooks import BatchOutcome

LiveTransition = Literal["fired", "acknowledged", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One episode's transition as a live client sees it."""

    farm_id: int
    episode_id: int
    transition: LiveTransition
    rule_id: int
    rule_name: str
    severity: str
    sensor_id: int
    device_id: int
    started_at: datetime
    at: datetime
    value: float | None = None
    worst: float | None = None
    by: str = ""  # acknowledged: who


AlertListener = Callable[[Sequence[AlertChange]], None]
_seam: Seam[Sequence[AlertChange]] = Seam("alert")


def register_alert_listener(listener: AlertListener) -> None:
    """Call ``listener`` with each committed transaction's transitions (best effort, after the commit)."""
    _seam.register(listener)


def unregister_alert_listener(listener: AlertListener) -> None:
    _seam.unregister(listener)


def alert_changes_publish(changes: Sequence[AlertChange]) -> None:
    """Hand committed transitions to every listener; one failing never stops the others."""
    _seam.publish(changes)


def alert_changes_on_commit(changes: Sequence[AlertChange]) -> None:
    """Publish ``changes`` once the caller's transaction commits (nothing if it rolls back)."""
    _seam.on_commit(tuple(changes))


NOTE: Final = "alerts"  # the kind of BatchOutcome note the writer leaves


def alerts_batch_notify(outcome: BatchOutcome) -> None:
    """The after-commit batch notifier: publish the transitions the batch's writer noted, if any."""
    alert_changes_publish(outcome.notes.get(NOTE, ()))
