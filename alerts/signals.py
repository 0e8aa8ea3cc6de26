"""The seam between alert transitions and whoever shows them live (docs/architecture.md §1).

Alerts never import a delivery app: ``dashboard`` registers a listener here from its
``AppConfig.ready`` (dependencies go dashboard → alerts → sensors). Listeners get the
transitions of one committed transaction at once (fired, acknowledged, resolved), after
the commit and best effort, like the batch notifier lane: what a listener misses a client
refetches, so only what a snapshot also carries travels here.

Transitions happen in three places, and each publishes after its own commit:

- an ingest batch (``alerts.writer``): the writer ``batch_changes_stash``-es them for its
  outcome, and ``alerts_batch_notify`` (a batch notifier) hands them to the listeners on the
  ingest worker's notifier thread, so an ingest commit never waits on a listener;
- the sweep and the acknowledge service: ``alert_changes_on_commit``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Final, Literal

from django.db import transaction

from sensors.hooks import BatchOutcome

logger = logging.getLogger(__name__)

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
_listeners: list[AlertListener] = []


def register_alert_listener(listener: AlertListener) -> None:
    """Call ``listener`` with each committed transaction's transitions (best effort, after the commit)."""
    if listener not in _listeners:
        _listeners.append(listener)


def unregister_alert_listener(listener: AlertListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def alert_changes_publish(changes: Sequence[AlertChange]) -> None:
    """Hand committed transitions to every listener; one failing never stops the others."""
    if not changes:
        return
    for listener in list(_listeners):
        try:
            listener(changes)
        except Exception:
            logger.exception("alert listener %s failed", getattr(listener, "__qualname__", listener))


def alert_changes_on_commit(changes: Sequence[AlertChange]) -> None:
    """Publish ``changes`` once the caller's transaction commits (nothing if it rolls back)."""
    if changes:
        transaction.on_commit(partial(alert_changes_publish, tuple(changes)))


# Committed batches' transitions, waiting for their outcome to reach the notifier lane.
# Keyed by id(outcome) and holding the outcome itself, so the id cannot be reused while
# the entry lives. The notifier thread drops an outcome when it falls behind, and then
# nothing pops its entry: the oldest give way past this bound (a batch in flight is one
# of the few its short queue holds, docs/architecture.md §1).
STASH_LIMIT: Final = 16
_stash: OrderedDict[int, tuple[BatchOutcome, tuple[AlertChange, ...]]] = OrderedDict()
_stash_lock = threading.Lock()


def batch_changes_stash(outcome: BatchOutcome, changes: Sequence[AlertChange]) -> None:
    """Inside a batch writer: keep ``changes`` for ``outcome``'s notifiers, if the batch commits.

    The writer runs before the batch registers its own after-commit hook, so this
    ``on_commit`` runs first and the entry is there when the notifier lane gets the outcome.
    """
    if changes:
        transaction.on_commit(partial(_stash_committed, outcome, tuple(changes)))


def _stash_committed(outcome: BatchOutcome, changes: tuple[AlertChange, ...]) -> None:
    with _stash_lock:
        _stash[id(outcome)] = (outcome, changes)
        while len(_stash) > STASH_LIMIT:
            _stash.popitem(last=False)


def alerts_batch_notify(outcome: BatchOutcome) -> None:
    """The after-commit batch notifier: publish what the batch's writer stashed, if anything."""
    with _stash_lock:
        entry = _stash.pop(id(outcome), None)
    if entry is not None and entry[0] is outcome:
        alert_changes_publish(entry[1])
