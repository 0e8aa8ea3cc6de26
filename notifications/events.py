"""What a producer (the alerts app) hands over: one event, serializable through the outbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from farm.models import Farm
from notifications.models import Severity, Transition


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """One thing worth telling people, e.g. an alert episode firing.

    ``key`` is the idempotency base (``f"{episode_id}:{transition}"``, with a reminder's
    number for reminders): the same key never produces a second message to a channel.
    ``lines`` are the body, one fact each (field, sensor, value, threshold, for how long,
    the rule's note); ``link`` is a path in the app or an absolute URL.
    """

    key: str
    farm: Farm
    severity: Severity
    transition: Transition
    subject: str
    lines: tuple[str, ...] = field(default_factory=tuple)
    link: str = ""

    @property
    def absolute_link(self) -> str:
        if not self.link or "://" in self.link:
            return self.link
        return settings.SITE_URL.rstrip("/") + "/" + self.link.lstrip("/")

    @property
    def body(self) -> str:
        return "\n".join([f"Farm: {self.farm.name}", *self.lines, *([self.absolute_link] if self.link else [])])

    def to_payload(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "farm_id": self.farm.pk,
            "severity": str(self.severity),
            "transition": str(self.transition),
            "subject": self.subject,
            "lines": list(self.lines),
            "link": self.link,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> NotificationEvent:
        return cls(
            key=str(payload["key"]),
            farm=Farm.objects.get(pk=payload["farm_id"]),
            severity=Severity(payload["severity"]),
            transition=Transition(payload["transition"]),
            subject=str(payload["subject"]),
            lines=tuple(str(line) for line in payload.get("lines", ())),
            link=str(payload.get("link", "")),
        )

    def data(self) -> dict[str, Any]:
        """The event as the webhook's JSON carries it (README, "Notifications")."""
        return {
            "key": self.key,
            "farm": {"id": self.farm.pk, "slug": self.farm.slug, "name": self.farm.name},
            "severity": str(self.severity),
            "transition": str(self.transition),
            "subject": self.subject,
            "lines": list(self.lines),
            "link": self.absolute_link,
        }
