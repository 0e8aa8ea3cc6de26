"""MQTT topics: which ones the worker subscribes to, and what a received topic names.

The contract is docs/architecture.md §3: ``farm/<uid>/telemetry`` and ``farm/<uid>/status`` for
devices that speak MQTT themselves, ChirpStack v4 and The Things Stack v3 uplinks for
LoRaWAN devices (whose uid is the DevEUI, taken from the payload).
"""

from __future__ import annotations

import functools
import re
from typing import Final, NamedTuple

from sensors.models import UID_PATTERN, normalize_uid

NATIVE: Final = "native"
CHIRPSTACK: Final = "chirpstack"
TTN: Final = "ttn"

TELEMETRY: Final = "telemetry"
STATUS: Final = "status"
UPLINK: Final = "uplink"

SHARE_GROUP_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")  # INGEST_SHARE_GROUP, as in farm/settings.py

FILTERS: Final[dict[str, tuple[str, ...]]] = {
    NATIVE: ("farm/+/telemetry", "farm/+/status"),
    CHIRPSTACK: ("application/+/device/+/event/up",),
    TTN: ("v3/+/devices/+/up",),
}


class Topic(NamedTuple):
    """What a topic says: its source, the kind of message, and the uid or device id in it."""

    source: str
    kind: str
    uid: str


class TopicError(ValueError):
    """The topic is not one the worker handles; the message becomes a dead letter."""

    def __init__(self, reason: str, source: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.source = source


def subscription_filters(sources: list[str], share_group: str = "") -> list[str]:
    """The topic filters for the enabled sources, through ``$share/<group>/`` when set."""
    if share_group and not SHARE_GROUP_PATTERN.fullmatch(share_group):
        raise ValueError(f"A share group is 1-64 of A-Z, a-z, 0-9, '-', '_'; got {share_group!r}")
    prefix = f"$share/{share_group}/" if share_group else ""
    return [prefix + f for source in sources for f in FILTERS[source]]


def topic_text(topic: bytes) -> str:
    """The topic for display and dead letters, even when it is not valid UTF-8."""
    return topic.decode("utf-8", errors="backslashreplace")


@functools.lru_cache(maxsize=65_536)
def parse_topic(topic: bytes) -> Topic | TopicError:
    """Parse a received topic; cached, because a deployment has a bounded set of topics.

    Returns the error rather than raising it so that the cache keeps bad topics too.
    """
    try:
        text = topic.decode("utf-8")
    except UnicodeDecodeError:
        return TopicError("The topic is not valid UTF-8.")
    parts = text.split("/")
    if len(parts) == 3 and parts[0] == "farm" and parts[2] in (TELEMETRY, STATUS):
        return _native(parts[1], parts[2])
    if len(parts) == 6 and parts[0] == "application" and parts[2] == "device" and parts[4:] == ["event", "up"]:
        return Topic(CHIRPSTACK, UPLINK, parts[3])
    if len(parts) == 5 and parts[0] == "v3" and parts[2] == "devices" and parts[4] == "up":
        return Topic(TTN, UPLINK, parts[3])
    return TopicError(f"Furrow does not handle the topic {text!r}.")


def _native(uid: str, kind: str) -> Topic | TopicError:
    if not UID_PATTERN.fullmatch(uid):
        bad = "".join(sorted({ch for ch in uid if not UID_PATTERN.fullmatch(ch)}))[:10]
        detail = f"characters {bad!r}" if bad else "length"
        return TopicError(
            f"The device uid {uid[:80]!r} in the topic is invalid ({detail}): "
            "a uid is 1–64 of A–Z, a–z, 0–9, '-', '_'.",
            NATIVE,
        )
    return Topic(NATIVE, kind, normalize_uid(uid))
