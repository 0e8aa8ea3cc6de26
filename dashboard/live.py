"""Live fan-out: every channel-layer group name and every ``group_send`` lives here.

Groups:
- ``farm.<farm_id>``: every socket watching that farm; gets one ``farm.update``
  per ingest batch (or offline sweep) that touched the farm.
  Alert transitions (fired, acknowledged, resolved) go to the same group as one
  ``alerts`` message per farm per committed transaction, numbered in the same sequence.
- ``user.<user_id>``: every socket of that user, whatever the farm; gets
  ``socket.close`` (logout, deactivation) and ``access.recheck`` (membership
  or staff flag changed).
- ``inbox.<user_id>``: the bell sockets of that user (``/ws/inbox/``, every signed-in page);
  gets ``inbox.changed`` after a commit that changed the user's in-app notifications. The
  message carries no count: each socket reads it when the message arrives, so the last
  message leaves every bell right whatever order concurrent commits' messages arrive in.

Channel layers are at-most-once (the pub/sub layer keeps nothing for a process that is not
subscribed at that moment; docs/architecture.md §6), so each farm message carries the farm's
next sequence number from Redis ``INCR``: a browser that sees a gap asks for a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from functools import lru_cache, partial
from typing import Any, TypeVar

import redis
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import BaseChannelLayer, channel_layers, get_channel_layer
from django.conf import settings
from django.utils import timezone

from alerts import selectors as alert_selectors
from alerts.signals import AlertChange
from sensors.hooks import BatchOutcome, DeviceChange, ReadingGroup

from . import payloads, selectors
from .protocol import CLOSE_FORBIDDEN as CLOSE_FORBIDDEN  # the codes live's socket.close carries
from .protocol import CLOSE_SIGNED_OUT as CLOSE_SIGNED_OUT

logger = logging.getLogger(__name__)

SEQUENCE_KEY = "furrow:live:seq:{farm_id}"

# Channel-layer calls in flight at once per event loop. channels_redis gives each loop a
# redis-py pool of at most 100 connections, and past that redis-py raises MaxConnectionsError
# instead of waiting: a batch spanning hundreds of farms, or a thousand browsers reconnecting
# after a restart, must queue for a slot rather than fail.
CHANNEL_LAYER_CONCURRENCY = 32
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
T = TypeVar("T")

SEND_TIMEOUT_S = 10.0


def farm_group(farm_id: int) -> str:
    return f"farm.{farm_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def inbox_group(user_id: int) -> str:
    return f"inbox.{user_id}"


def session_fingerprint(session_key: str | None) -> str:
    """A session key stands for a login: only its hash travels through Redis."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()[:32]


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def farm_sequence(farm_id: int) -> int:
    """The farm's last sequence number (0 before its first message)."""
    value = _redis().get(SEQUENCE_KEY.format(farm_id=farm_id))
    return int(value) if value is not None else 0


def farm_sequences_next(farm_ids: list[int]) -> dict[int, int]:
    """Take the next sequence number of each farm, in one round trip."""
    pipe = _redis().pipeline(transaction=False)
    for farm_id in farm_ids:
        pipe.incr(SEQUENCE_KEY.format(farm_id=farm_id))
    return dict(zip(farm_ids, (int(n) for n in pipe.execute()), strict=True))


def farm_updates_publish(outcome: BatchOutcome) -> None:
    """The after-commit batch hook: one ``farm.update`` per farm in the batch.

    Registered in ``DashboardConfig.ready``. The sequence number is taken
    after the batch committed, which is what lets a snapshot read the number
    first and the database second (see ``consumers``).
    """
    readings: dict[int, list[ReadingGroup]] = defaultdict(list)
    devices: dict[int, list[DeviceChange]] = defaultdict(list)
    for group in outcome.groups:  # per message, not per reading
        readings[group[0].farm_id].append(group)
    for change in outcome.devices:
        devices[change.farm_id].append(change)
    farm_ids = sorted(readings.keys() | devices.keys())
    if not farm_ids:
        return
    seqs = farm_sequences_next(farm_ids)
    now = timezone.now()
    messages = [
        (
            farm_group(farm_id),
            {
                "type": "farm.update",
                "text": payloads.update_text(
                    farm_id=farm_id, seq=seqs[farm_id], readings=readings[farm_id], devices=devices[farm_id], now=now
                ),
            },
        )
        for farm_id in farm_ids
    ]
    _send_from_sync(messages)


def farm_alerts_publish(changes: Sequence[AlertChange]) -> None:
    """The alert listener (``alerts.signals``): one ``alerts`` message per farm per committed transaction.

    Registered in ``DashboardConfig.ready``. Sequence numbers first, counts second: a
    message's counts then include every commit numbered up to it (as a snapshot does, see
    ``farm_snapshot``), so the last message a browser applies never carries stale counts.
    """
    by_farm: dict[int, list[AlertChange]] = defaultdict(list)
    for change in changes:
        by_farm[change.farm_id].append(change)
    farm_ids = sorted(by_farm)
    if not farm_ids:
        return
    seqs = farm_sequences_next(farm_ids)
    counts = alert_selectors.farms_open_counts(farm_ids)
    now = timezone.now()
    messages = [
        (
            farm_group(farm_id),
            {
                "type": "farm.update",
                "text": payloads.alerts_text(
                    farm_id=farm_id,
                    seq=seqs[farm_id],
                    changes=by_farm[farm_id],
                    firing=counts[farm_id][0],
                    acknowledged=counts[farm_id][1],
                    now=now,
                ),
            },
        )
        for farm_id in farm_ids
    ]
    _send_from_sync(messages)


def user_sockets_close(*, user_id: int, code: int, session_key: str | None = None) -> None:
    """Close the user's open sockets: all of them, or only those opened with ``session_key``."""
    message = {
        "type": "socket.close",
        "code": code,
        "session": None if session_key is None else session_fingerprint(session_key),
    }
    _send_from_sync([(user_group(user_id), message)])


def user_access_recheck(*, user_id: int) -> None:
    """Ask the user's open sockets to re-check their access (membership or staff flag changed)."""
    _send_from_sync([(user_group(user_id), {"type": "access.recheck"})])


def inbox_changed_publish(user_ids: Collection[int]) -> None:
    """The inbox listener (``notifications.inbox_signals``): nudge the bells of these people."""
    _send_from_sync([(inbox_group(user_id), {"type": "inbox.changed"}) for user_id in sorted(user_ids)])


async def _bounded(call: Callable[[], Awaitable[T]]) -> T:
    """Make one channel-layer call once the running loop has a free slot (see CHANNEL_LAYER_CONCURRENCY)."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(CHANNEL_LAYER_CONCURRENCY)
    async with slots:
        return await call()


async def socket_join(channel_name: str, *, farm_id: int, user_id: int) -> None:
    """Also called again on the access timer: joining twice is harmless, and a layer that expires
    memberships (channels_redis's list-based layer forgets them after a day) gets them back."""
    await _groups_change("group_add", channel_name, [farm_group(farm_id), user_group(user_id)])


async def socket_leave(channel_name: str, *, farm_id: int, user_id: int) -> None:
    await _groups_change("group_discard", channel_name, [farm_group(farm_id), user_group(user_id)])


async def inbox_socket_join(channel_name: str, *, user_id: int) -> None:
    """A bell socket hears its inbox's changes and, like every socket of the user, logout and revocation."""
    await _groups_change("group_add", channel_name, [inbox_group(user_id), user_group(user_id)])


async def inbox_socket_leave(channel_name: str, *, user_id: int) -> None:
    await _groups_change("group_discard", channel_name, [inbox_group(user_id), user_group(user_id)])


async def _groups_change(method: str, channel_name: str, groups: list[str]) -> None:
    layer = get_channel_layer()
    assert layer is not None
    change = getattr(layer, method)
    await asyncio.gather(*(_bounded(partial(change, group, channel_name)) for group in groups))


def waiting_messages(layer: Any, channel_name: str) -> Iterator[dict[str, Any]]:
    """The messages this process already holds for ``channel_name``, oldest first, without waiting.

    The pub/sub layer delivers a group's message into an in-process queue per socket; a socket
    that falls behind (a thousand dashboards on one daphne process) finds several there, and
    sends them as one frame instead of one frame each. Taken one at a time, so the caller can
    stop at any message. Another layer holds nothing in process: none are waiting.
    """
    get_layer = getattr(layer, "_get_layer", None)  # RedisPubSubChannelLayer: one layer per event loop
    if get_layer is None:
        return
    queue = get_layer().channels.get(channel_name)
    while queue is not None and not queue.empty():
        yield layer.deserialize(queue.get_nowait())


class _SyncSender:
    """Sends from sync code (the ingest worker's batch hooks, signal receivers) on one long-lived loop.

    async_to_sync would start a new event loop per call, and channels_redis keeps its connection
    pool per loop: every ingest batch opened fresh Redis connections, a fifth of the worker's hook
    time (py-spy, bench/dashboard_latency.py). The loop runs on a daemon thread and has a layer
    instance of its own, since a channels_redis layer's ``flush()`` closes every loop's connections
    from the calling loop. One per process: a forked child (Celery prefork) has the parent's loop
    object but not its thread.
    """

    _by_pid: dict[int, _SyncSender] = {}
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.config: dict[str, Any] | None = None
        self.layer: BaseChannelLayer | None = None
        threading.Thread(target=self.loop.run_forever, name="live-fanout", daemon=True).start()

    @classmethod
    def current(cls) -> _SyncSender:
        with cls._lock:
            sender = cls._by_pid.get(os.getpid())
            if sender is None:
                sender = cls._by_pid[os.getpid()] = cls()
            return sender

    def send(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        future = asyncio.run_coroutine_threadsafe(_group_send_many(self.channel_layer(), messages), self.loop)
        try:
            future.result(timeout=SEND_TIMEOUT_S)
        except TimeoutError:
            future.cancel()
            raise

    def channel_layer(self) -> BaseChannelLayer | None:
        config = channel_layers.configs.get(DEFAULT_CHANNEL_LAYER)
        with self._lock:
            if config != self.config:  # first use, or the settings changed (tests override them)
                self.config = config
                self.layer = None if config is None else channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
            return self.layer


def _send_from_sync(messages: list[tuple[str, dict[str, Any]]]) -> None:
    _SyncSender.current().send(messages)


async def _group_send_many(layer: BaseChannelLayer | None, messages: list[tuple[str, dict[str, Any]]]) -> None:
    if layer is None:
        logger.warning("no channel layer configured; %d live message(s) not sent", len(messages))
        return
    await asyncio.gather(*(_bounded(partial(layer.group_send, group, message)) for group, message in messages))


def farm_snapshot(farm_id: int) -> str:
    """The farm's current state as a ``snapshot`` message.

    The sequence number is read *before* the database: a batch's number is
    taken only after it committed, so every message numbered up to the one we
    read is already in what we read next, and the browser may skip them.
    """
    seq = farm_sequence(farm_id)
    return payloads.snapshot_text(
        farm_id=farm_id,
        seq=seq,
        sensors=selectors.farm_latest_values(farm_id),
        devices=selectors.farm_devices(farm_id),
        alerts=alert_selectors.farm_open_episodes(farm_id),
        now=timezone.now(),
    )
