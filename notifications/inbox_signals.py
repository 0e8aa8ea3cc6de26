"""The seam between the in-app inbox and whoever shows its bell live (docs/architecture.md §1).

Notifications never import the dashboard: ``dashboard`` registers a listener here from its
``AppConfig.ready`` (dependencies go dashboard → notifications). A listener gets the ids of
the people whose inbox changed in one committed transaction, after the commit and best
effort: a browser refetches its count whenever its socket (re)connects, so a missed nudge
costs only liveness, never a notification.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from functools import partial

from django.db import transaction

logger = logging.getLogger(__name__)

InboxListener = Callable[[Collection[int]], None]
_listeners: list[InboxListener] = []


def register_inbox_listener(listener: InboxListener) -> None:
    """Call ``listener`` with the user ids whose inbox changed, after each commit that changed one."""
    if listener not in _listeners:
        _listeners.append(listener)


def unregister_inbox_listener(listener: InboxListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def inbox_changed_publish(user_ids: Collection[int]) -> None:
    """Hand the changed inboxes to every listener; one failing never stops the others."""
    if not user_ids:
        return
    for listener in list(_listeners):
        try:
            listener(user_ids)
        except Exception:
            logger.exception("inbox listener %s failed", getattr(listener, "__qualname__", listener))


def inbox_changed_on_commit(user_ids: Collection[int]) -> None:
    """Publish once the caller's transaction commits (nothing if it rolls back)."""
    if user_ids:
        transaction.on_commit(partial(inbox_changed_publish, frozenset(user_ids)))
