"""The child processes of ``bench/ingest_bench.py``: load generators and the bare subscriber.

Nothing here imports Django: these run in processes of their own (``spawn``), so that the
generators, the bare subscriber, the worker and the broker each get a core's share as in
production, and none of them pays for another's GIL.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from typing import Any

import paho.mqtt.client as mqtt

from sensors.simulator import SimConfig, catalogue_keys, run_simulation, site_for, synthetic_devices
from sensors.simulator.devices import SimDevice

FARM_SLUG = "bench"


@dataclass(frozen=True)
class DeviceSet:
    """Synthetic native devices, the same in every process: ``sim-<seed>-<n>`` with ``metrics`` keys."""

    seed: int
    count: int
    metrics: int

    def devices(self) -> list[SimDevice]:
        return synthetic_devices(
            self.count,
            keys=catalogue_keys(self.metrics),
            site=site_for(farm_slug=FARM_SLUG),
            farm_slug=FARM_SLUG,
            shape="native",
            seed=self.seed,
            allow_seconds=False,  # millisecond timestamps: many messages a second per device stay distinct
        )


@dataclass
class Published:
    """What one generator process published and had acknowledged (PUBACK) by the broker."""

    published: int = 0
    acked: int = 0
    unacked: int = 0
    refused: int = 0
    rejected: int = 0
    started: float = 0.0  # time.time()
    seconds: float = 0.0
    acked_ts: dict[str, list[int]] = field(default_factory=dict)  # uid -> timestamps (µs) of acked messages


def publish(
    url: str,
    devices: DeviceSet,
    *,
    lane: int,
    lanes: int,
    messages: int | None,
    rate: float,
    seconds: float | None,
    clients: int,
    window: int,
    out: Queue[Any],
) -> None:
    """Publish through the simulator with every ``lanes``-th device from ``lane`` (so one device, one process).

    ``rate`` is messages/s for this process (``math.inf``: as fast as the broker acks). Each
    of the ``clients`` paho clients holds at most ``window`` unacknowledged messages, far
    below the 65,535 packet ids of one client (docs/architecture.md §5); a message counts only once
    its PUBACK arrived.
    """
    mine = devices.devices()[lane::lanes]
    started = time.time()
    summary = run_simulation(
        SimConfig(
            url=url,
            devices=mine,
            rate=rate,
            duration=seconds,
            max_messages=messages,
            clients=clients,
            window=window,
            track=True,
            drain_timeout=120.0,
        )
    )
    acked_ts: dict[str, list[int]] = {}
    for (uid, _keys), stamps in summary.acked_ts.items():
        acked_ts.setdefault(uid, []).extend(stamps)
    out.put(
        Published(
            published=summary.total_published,
            acked=summary.total_acked,
            unacked=summary.unacked,
            refused=summary.refused,
            rejected=summary.rejected,
            started=started,
            seconds=summary.elapsed,
            acked_ts=acked_ts,
        )
    )


# --- the bare subscriber -------------------------------------------------------------------------


@dataclass
class Counted:
    received: int = 0
    connected_at: float = 0.0  # time.time() of the CONNACK
    first_at: float = 0.0  # of the first message
    last_at: float = 0.0  # of the last message
    max_gap: float = 0.0  # the longest wait between two messages (a broker busy saving its database shows here)
    session_present: bool = False
    timed_out: bool = False


def _bare_client(client_id: str) -> mqtt.Client:
    # paho's defaults otherwise: automatic ack as on_message returns, its own loop.
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)


def bare_subscribe(host: str, port: int, client_id: str, filters: list[str]) -> None:
    """Create the bare subscriber's persistent session (QoS 1, the worker's topic filters) and leave."""
    client = _bare_client(client_id)
    granted: list[bool] = []

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, reasons: list[Any], props: Any) -> None:
        granted.append(not any(reason.is_failure for reason in reasons))
        c.disconnect()

    client.on_connect = lambda c, u, f, r, p: c.subscribe([(t, 1) for t in filters])
    client.on_subscribe = on_subscribe
    client.connect(host, port)
    client.loop_forever(timeout=0.1)
    if granted != [True]:
        raise RuntimeError("the broker refused the bare subscriber's subscription")


def bare_drain(host: str, port: int, client_id: str, expect: int, idle_timeout: float, out: Queue[Any]) -> None:
    """Resume the persistent session and count the backlog: QoS 1, acked by paho, nothing else done.

    The client ceiling the worker is compared with: the same broker, session kind, topic
    filters and messages, with no decoding and no database.
    """
    counted = Counted()
    client = _bare_client(client_id)

    def on_connect(c: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        counted.connected_at = time.time()
        counted.session_present = flags.session_present

    def on_message(c: mqtt.Client, u: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        if not counted.received:
            counted.first_at = now
        else:
            counted.max_gap = max(counted.max_gap, now - counted.last_at)
        counted.received += 1
        counted.last_at = now
        if counted.received >= expect:
            c.disconnect()

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(host, port)
    while client.loop(timeout=0.5) == mqtt.MQTT_ERR_SUCCESS:
        quiet_since = counted.last_at or counted.connected_at or math.inf
        if time.time() - quiet_since > idle_timeout:
            counted.timed_out = True
            client.disconnect()
    out.put(counted)
