"""After-commit seams: how a lower app tells a higher one about committed changes without importing it.

An app that makes a change (alerts, notifications) owns a ``Seam``; the app that shows it live
(``dashboard``) registers a listener from its ``AppConfig.ready``, so dependencies run one way.
Listeners are called after the commit and best effort: one that raises is logged and the
others still run, and what a listener misses its client refetches (docs/architecture.md §1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sized
from functools import partial
from typing import Generic, TypeVar

from django.db import transaction

logger = logging.getLogger(__name__)

P = TypeVar("P", bound=Sized)


class Seam(Generic[P]):
    """Listeners of one kind of committed change; ``P`` is what one commit hands them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.listeners: list[Callable[[P], None]] = []

    def register(self, listener: Callable[[P], None]) -> None:
        if listener not in self.listeners:
            self.listeners.append(listener)

    def unregister(self, listener: Callable[[P], None]) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def publish(self, payload: P) -> None:
        """Hand ``payload`` to every listener now; one failing never stops the others."""
        if not payload:
            return
        for listener in list(self.listeners):
            try:
                listener(payload)
            except Exception:
                logger.exception("%s listener %s failed", self.name, getattr(listener, "__qualname__", listener))

    def on_commit(self, payload: P) -> None:
        """Publish ``payload`` once the caller's transaction commits (nothing if it rolls back)."""
        if payload:
            transaction.on_commit(partial(self.publish, payload))
