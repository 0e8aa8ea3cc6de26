"""The seam between the in-app inbox and whoever shows its bell live (docs/architecture.md §1).

Notifications never import the dashboard: ``dashboard`` registers a listener here from its
``AppConfig.ready`` (dependencies go dashboard → notifications). A listener gets the ids of
the people whose inbox changed in one committed transaction, after the commit and best
effort: a browser refetches its count whenever its socket (re)connects, so a missed nudge
costs only liveness, never a notification.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from farm.seams import Seam

InboxListener = Callable[[Collection[int]], None]
_seam: Seam[Collection[int]] = Seam("inbox")


def register_inbox_listener(listener: InboxListener) -> None:
    """Call ``listener`` with the user ids whose inbox changed, after each commit that changed one."""
    _seam.register(listener)


def unregister_inbox_listener(listener: InboxListener) -> None:
    _seam.unregister(listener)


def inbox_changed_publish(user_ids: Collection[int]) -> None:
    """Hand the changed inboxes to every listener; one failing never stops the others."""
    _seam.publish(user_ids)


def inbox_changed_on_commit(user_ids: Collection[int]) -> None:
    """Publish once the caller's transaction commits (nothing if it rolls back)."""
    _seam.on_commit(frozenset(user_ids))
