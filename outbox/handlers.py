"""Which function processes an outbox topic. Apps register theirs in ``AppConfig.ready``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

OutboxHandler = Callable[[dict[str, Any]], None]
"""Processes one message's payload inside the drain's transaction.

It should write to the database only (e.g. delivery records), so that its effects
commit exactly once with the message being marked processed. Anything that leaves
the database (an e-mail, a webhook) goes to a task of its own, idempotent by a key.
"""

_handlers: dict[str, OutboxHandler] = {}


def register_outbox_handler(topic: str, handler: OutboxHandler) -> None:
    existing = _handlers.get(topic)
    if existing is not None and existing is not handler:
        raise ValueError(f"outbox topic {topic!r} already has a handler: {existing!r}")
    _handlers[topic] = handler


def unregister_outbox_handler(topic: str) -> None:
    _handlers.pop(topic, None)


def outbox_handler(topic: str) -> OutboxHandler | None:
    return _handlers.get(topic)
