"""The simulator: signal physics, payload contracts (docs/architecture.md §3), fault injection, and publishing
through a real Mosquitto with exact PUBACK accounting."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
import time_machine
from django.core.management import CommandError, call_command

from farm.models import Farm
from sensors.models import UID_PATTERN, Device, Sensor
from sensors.simulator import (
    MALFORMED_KINDS,
    Shape,
    SimConfig,
    acked_readings,
    build_device,
    catalogue_keys,
    run_simulation,
    site_for,
    synthetic_devices,
)
from sensors.simulator.devices import SimDevice, choose_shape
from sensors.simulator.malformed import malformed_message
from sensors.simulator.mqtt import Publisher, broker_address
from sensors.simulator.payloads import (
    Message,
    chirpstack_uplink,
    native_telemetry,
    status_message,
    telemetry_message,
    tts_uplink,
)
from sensors.simulator.physics import (
    CATALOGUE,
    DAY,
    HOUR,
    DevicePhysics,
    Site,
    battery_age,
    battery_cycle,
    moment,
    rain_between,
    rain_events,
    sample,
    value_at,
)
from sensors.simulator.registry import synthetic_devices_register
from sensors.simulator.runner import _State, _wills, is_dropped
from tests.factories import DeviceFactory, DeviceKindFactory, FarmFactory, MetricSpecFactory
from tests.mqtt_fixtures import wait_until

ROOT = Path(__file__).resolve().parent.parent
JULY = datetime(2025, 7, 1, tzinfo=UTC).timestamp()
JANUARY = datetime(2025, 1, 5, tzinfo=UTC).timestamp()
TELEMETRY_FILTERS = [
    ("farm/+/telemetry", 1),
    ("farm/+/status", 1),
    ("application/+/device/+/event/up", 1),
    ("v3/+/devices/+/up", 1),
]


def _device(uid: str = "probe-1", *, keys: tuple[str, ...] = tuple(CATALOGUE), seed: int = 0, **kw: Any) -> SimDevice:
    site = kw.pop("site", None) or site_for(farm_slug="test-farm", time_zone="Europe/London", seed=seed)
    defaults: dict[str, Any] = {"interval": 900, "farm_slug": "test-farm", "seed": seed}
    return build_device(uid=uid, keys=keys, site=site, **{**defaults, **kw})


def _local_time(tz: str, day: datetime, hour: int) -> float:
    return day.replace(hour=hour, tzinfo=ZoneInfo(tz)).timestamp()


# --- physics ---------------------------------------------------------------------------------


def test_air_temperature_peaks_in_the_afternoon_of_the_farms_time_zone() -> None:
    tz = "America/Los_Angeles"  # 7–8 h behind UTC: a model ignoring the zone would peak in the morning
    d = DevicePhysics(site=Site(seed=11, time_zone=tz, latitude=37.0), seed=5)
    days = [datetime(2025, 7, 1) + timedelta(days=n) for n in range(14)]
    by_hour = {
        hour: statistics.mean(
            value_at(d, "air_temperature", moment(d.site, _local_time(tz, day, hour))) for day in days
        )
        for hour in range(24)
    }
    warmest = max(by_hour, key=lambda h: by_hour[h])
    coldest = min(by_hour, key=lambda h: by_hour[h])
    assert 13 <= warmest <= 17, by_hour
    assert 3 <= coldest <= 7, by_hour
    assert by_hour[warmest] - by_hour[coldest] > 5


def test_humidity_falls_as_the_air_warms() -> None:
    d = DevicePhysics(site=Site(seed=3, time_zone="Europe/Paris"), seed=9)
    times = [JULY + h * HOUR for h in range(72)]
    temperature = [value_at(d, "air_temperature", moment(d.site, t)) for t in times]
    humidity = [value_at(d, "air_humidity", moment(d.site, t)) for t in times]
    assert statistics.correlation(temperature, humidity) < -0.6


def _winter_shower(site: Site) -> tuple[float, float, float]:
    """(start, end, mm) of a shower of at least 3 mm with 2 dry days after it."""
    day0 = math.floor(JANUARY / DAY)
    events = sorted((e for day in range(day0, day0 + 120) for e in rain_events(site, day)), key=lambda e: e.start)
    for event, following in itertools.pairwise(events):
        if event.amount >= 3 and following.start > event.end + 2 * DAY:
            return event.start, event.end, event.amount
    raise AssertionError("no isolated winter shower in 120 days")


def test_soil_moisture_jumps_after_rain_then_dries_slowly() -> None:
    d = DevicePhysics(site=Site(seed=21, time_zone="Europe/London"), seed=4)
    start, end, _ = _winter_shower(d.site)  # winter: no irrigation muddles it

    def moisture(t: float) -> float:
        return value_at(d, "soil_moisture", moment(d.site, t))

    before, after = moisture(start - 60), moisture(end + HOUR)
    assert after - before > 2
    a_day_later, two_days_later = moisture(end + DAY), moisture(end + 2 * DAY)
    assert two_days_later < a_day_later < after  # dries out day by day...
    assert after - a_day_later < after - before  # ...more slowly than it wetted


def test_a_rain_gauge_reports_the_rain_since_its_previous_reading() -> None:
    site = Site(seed=21, time_zone="Europe/London")
    d = DevicePhysics(site=site, seed=4)
    start, end, amount = _winter_shower(site)
    times = [start - HOUR + k * 900 for k in range(int((end - start) / 900) + 9)]
    readings = [sample(d, ["rain"], t, since=t - 900)["rain"] for t in times]
    assert readings[0] == 0
    assert max(readings) > 0
    assert sum(readings) == pytest.approx(amount, rel=0.15)  # the gauge's own catch efficiency: ±10 %
    assert rain_between(site, times[0] - 900, times[-1]) == pytest.approx(amount)


def test_battery_drains_slowly_and_is_full_again_after_replacement() -> None:
    d = DevicePhysics(site=Site(seed=1), seed=77)
    fresh = JULY - battery_age(d, JULY) + DAY  # a day after the last replacement
    cycle = battery_cycle(d)

    def battery(t: float) -> float:
        return value_at(d, "battery", moment(d.site, t))

    weekly = [battery(fresh + week * 7 * DAY) for week in range(int(cycle / (7 * DAY)))]
    assert weekly[0] > 97
    assert all(later < earlier for earlier, later in itertools.pairwise(weekly))
    assert weekly[-1] < 40
    assert battery(fresh + cycle) > 97  # replaced


def test_solar_radiation_follows_the_sun() -> None:
    d = DevicePhysics(site=Site(seed=8, time_zone="Europe/Madrid", latitude=40.4), seed=2)
    day = datetime(2025, 6, 20)
    at = {h: value_at(d, "solar_radiation", moment(d.site, _local_time(d.site.time_zone, day, h))) for h in range(24)}
    assert at[1] == at[23] == 0
    assert max(at, key=lambda h: at[h]) in range(11, 16)
    assert max(at.values()) > 300


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_metric_stays_within_physically_plausible_bounds(seed: int) -> None:
    bounds = {
        "soil_moisture": (5, 55),
        "soil_temperature": (-10, 40),
        "soil_ec": (0, 6),
        "air_temperature": (-25, 45),
        "air_humidity": (5, 100),
        "rain": (0, 30),
        "pressure": (960, 1060),
        "wind_speed": (0, 30),
        "wind_direction": (0, 360),
        "solar_radiation": (0, 1100),
        "water_level": (0, 5),
        "battery": (0, 100),
    }
    site = Site(seed=seed, time_zone="Europe/Berlin", latitude=52.5 if seed != 3 else -33.9)
    devices = [DevicePhysics(site=site, seed=seed * 100 + n) for n in range(4)]
    for k in range(0, 365 * 24, 11):  # a year, every 11 hours
        t = JANUARY + k * HOUR
        for d in devices:
            for key, value in sample(d, CATALOGUE, t, since=t - 900).items():
                low, high = bounds[key]
                assert low <= value <= high, (key, value, datetime.fromtimestamp(t, UTC))


def test_the_same_seed_gives_the_same_readings_and_another_seed_other_readings() -> None:
    a = _device(seed=1)
    again = _device(seed=1)
    other = _device(seed=2)
    assert sample(a.physics, a.keys, JULY) == sample(again.physics, again.keys, JULY)
    assert sample(a.physics, a.keys, JULY) != sample(other.physics, other.keys, JULY)


# --- payload contracts (docs/architecture.md §3) -----------------------------------------------------------


def _epoch_us(value: int | str) -> int:
    """The contract's timestamps: epoch s, epoch ms, or ISO-8601 with an offset."""
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        assert parsed.tzinfo is not None, f"{value!r} has no offset"
        return round(parsed.timestamp() * 1_000_000)
    return value * 1000 if value >= 100_000_000_000 else value * 1_000_000


def _native_readings(uid: str, obj: dict[str, Any]) -> set[tuple[str, str, int]]:
    ts = _epoch_us(obj["ts"])
    values = obj["values"] if "values" in obj else {k: v for k, v in obj.items() if k != "ts"}
    assert values, obj
    assert all(isinstance(v, float | int) for v in values.values()), obj
    return {(uid, key, ts) for key in values}


def _codec_readings(uid: str, decoded: dict[str, Any], ts: int) -> set[tuple[str, str, int]]:
    numbers = {k for k, v in decoded.items() if isinstance(v, float | int) or re.fullmatch(r"-?\d+(\.\d+)?", str(v))}
    return {(uid, key, ts) for key in numbers}


def contract_readings(topic: str, payload: bytes) -> set[tuple[str, str, int]]:
    """Parse a well-formed telemetry message the way docs/architecture.md §3 describes it: (uid, metric, ts µs)."""
    body = json.loads(payload)
    if match := re.fullmatch(r"farm/([A-Za-z0-9_-]{1,64})/telemetry", topic):
        objects = body if isinstance(body, list) else [body]
        return set().union(*(_native_readings(match[1], obj) for obj in objects))
    if match := re.fullmatch(r"application/([0-9a-f-]{36})/device/([0-9a-f]{16})/event/up", topic):
        info = body["deviceInfo"]
        assert info["devEui"] == match[2]
        assert info["applicationId"] == match[1]
        assert 1 <= len(body["rxInfo"]) <= 3
        assert all(isinstance(rx["rssi"], int) and isinstance(rx["snr"], float) for rx in body["rxInfo"])
        return _codec_readings(info["devEui"], body["object"], _epoch_us(body["time"]))
    if match := re.fullmatch(r"v3/([a-z0-9-]+)(@[a-z0-9-]+)?/devices/([a-z0-9-]+)/up", topic):
        ids, up = body["end_device_ids"], body["uplink_message"]
        assert ids["device_id"] == match[3]
        assert ids["application_ids"]["application_id"] == match[1]
        assert re.fullmatch(r"[0-9A-F]{16}", ids["dev_eui"]), "TTS sends the DevEUI in upper case"
        assert 1 <= len(up["rx_metadata"]) <= 3
        assert all(isinstance(rx["rssi"], int) and isinstance(rx["snr"], float) for rx in up["rx_metadata"])
        return _codec_readings(ids["dev_eui"].lower(), up["decoded_payload"], _epoch_us(body["received_at"]))
    raise AssertionError(f"not a telemetry topic: {topic}")


def _expected(message: Message) -> set[tuple[str, str, int]]:
    return {(message.uid, key, ts) for ts, keys in message.readings for key in keys}


NOW_US = 1_763_719_200_123_000


@pytest.mark.parametrize(("ts_style", "form"), [("s", "flat"), ("ms", "flat"), ("iso", "flat"), ("ms", "values")])
def test_native_telemetry_is_a_flat_object_or_a_values_object(ts_style: str, form: str) -> None:
    device = replace(_device(shape="native"), ts_style=ts_style, form=form)
    ts = NOW_US // 1_000_000 * 1_000_000 if ts_style == "s" else NOW_US
    message = telemetry_message(device, ts, {"soil_moisture": 31.2, "air_temperature": 18.4})
    body = json.loads(message.payload)
    assert message.topic == "farm/probe-1/telemetry"
    assert ("values" in body) == (form == "values")
    assert {"s": int, "ms": int, "iso": str}[ts_style] is type(body["ts"])
    assert contract_readings(message.topic, message.payload) == _expected(message)
    assert _expected(message) == {("probe-1", "soil_moisture", ts), ("probe-1", "air_temperature", ts)}


def test_a_buffer_flush_is_a_json_array_of_timestamped_objects() -> None:
    device = replace(_device(shape="native"), ts_style="iso")
    samples = [(NOW_US - k * 60_000_000, {"soil_moisture": 30.0 + k}) for k in range(3)]
    message = native_telemetry(device, samples)
    body = json.loads(message.payload)
    assert isinstance(body, list)
    assert len(body) == 3
    assert all("ts" in item for item in body)
    assert contract_readings(message.topic, message.payload) == _expected(message)
    assert len(_expected(message)) == 3


def test_chirpstack_uplinks_carry_a_messy_decoded_object() -> None:
    device = _device("a84041000181c002", keys=("soil_moisture", "soil_temperature", "soil_ec"), shape="mixed")
    device = replace(device, codec_extras=True)
    assert device.shape is Shape.CHIRPSTACK
    values = sample(device.physics, device.keys, NOW_US / 1e6)
    messages = [chirpstack_uplink(device, NOW_US, values, fcnt) for fcnt in (1, 2)]
    body = json.loads(messages[0].payload)
    assert body["deviceInfo"]["devEui"] == "a84041000181c002"
    assert datetime.fromisoformat(body["time"]) == datetime.fromtimestamp(NOW_US / 1e6, UTC)
    assert isinstance(body["object"]["sensor"], dict)
    assert isinstance(body["object"]["status"], str)
    assert contract_readings(messages[0].topic, messages[0].payload) == _expected(messages[0])
    assert body["fCnt"] == 1
    assert json.loads(messages[1].payload)["fCnt"] == 2


def test_some_codecs_send_numbers_as_strings() -> None:
    devices = [_device(f"a84041000181c{n:03x}", keys=("soil_moisture", "air_temperature")) for n in range(20)]
    stringy = [d for d in devices if d.string_keys]
    assert 0 < len(stringy) < len(devices)
    assert 0 < len([d for d in devices if d.codec_extras]) < len(devices)
    decoded = json.loads(telemetry_message(stringy[0], NOW_US, {"soil_moisture": 31.2, "air_temperature": 1.0}).payload)
    decoded = decoded.get("object") or decoded["uplink_message"]["decoded_payload"]
    assert decoded["soil_moisture"] == "31.2"
    assert decoded["air_temperature"] == 1.0


@pytest.mark.parametrize("tenant", ["furrow", ""])
def test_the_things_stack_uplinks_with_and_without_a_tenant(tenant: str) -> None:
    device = replace(
        _device("70b3d57ed0051a3f", keys=("water_level",), shape="ttn"), tenant=tenant, string_keys=frozenset()
    )
    message = tts_uplink(device, NOW_US, {"water_level": 1.234}, 7)
    owner = "test-farm-sensors@furrow" if tenant else "test-farm-sensors"
    assert message.topic == f"v3/{owner}/devices/eui-70b3d57ed0051a3f/up"
    body = json.loads(message.payload)
    assert body["end_device_ids"]["dev_eui"] == "70B3D57ED0051A3F"
    assert body["uplink_message"]["decoded_payload"]["water_level"] == 1.234
    assert contract_readings(message.topic, message.payload) == {("70b3d57ed0051a3f", "water_level", NOW_US)}


def test_devEUI_devices_go_through_a_network_server_and_others_publish_natively() -> None:
    assert choose_shape("brookside-soil-1", "mixed") is Shape.NATIVE
    assert choose_shape("a84041000181c2d2", "mixed") is Shape.CHIRPSTACK  # even
    assert choose_shape("a84041000181c2d1", "mixed") is Shape.TTN  # odd
    assert choose_shape("a84041000181c2d1", "chirpstack") is Shape.CHIRPSTACK
    assert choose_shape("A84041000181C2D2", "native") is Shape.NATIVE
    assert choose_shape("brookside-soil-1", "ttn") is Shape.NATIVE  # a name is no DevEUI


def test_status_messages_are_plain_online_and_offline() -> None:
    assert status_message("probe-1", online=False).payload == b"offline"
    assert status_message("probe-1", online=True).topic == "farm/probe-1/status"


def test_each_client_carries_one_last_will_for_a_native_device() -> None:
    devices = [_device("a84041000181c002"), _device("probe-a"), _device("probe-b"), _device("a84041000181c004")]
    states = [_State(device=d, lane=i % 2, period=1.0) for i, d in enumerate(devices)]
    wills = _wills(states, 2)
    assert [w.topic if w else None for w in wills] == ["farm/probe-b/status", "farm/probe-a/status"]
    assert all(w and w.payload == b"offline" for w in wills)


def test_broker_urls_give_transport_tls_and_credentials() -> None:
    ws = broker_address("wss://dev%40farm:s%3Acret@mq.example.com/mqtt-ws")
    assert (ws.transport, ws.tls, ws.port, ws.path) == ("websockets", True, 443, "/mqtt-ws")
    assert (ws.username, ws.password) == ("dev@farm", "s:cret")
    plain = broker_address("mqtt://127.0.0.1")
    assert (plain.transport, plain.tls, plain.port, plain.username) == ("tcp", False, 1883, None)
    assert broker_address("mqtts://h").port == 8883


# --- malformed input ----------------------------------------------------------------------------


def _strict(payload: bytes) -> Any:
    def no_constants(name: str) -> None:
        raise ValueError(name)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate key")
        return dict(pairs)

    return json.loads(payload, parse_constant=no_constants, object_pairs_hook=no_duplicates)


def _rejected_by_strict_json(payload: bytes) -> bool:
    try:
        _strict(payload)
    except ValueError:
        return True
    return False


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode()
    except UnicodeDecodeError:
        return False
    return True


def _first_value(m: Message) -> Any:
    return json.loads(m.payload)["soil_moisture"]


def _ts_offset(m: Message) -> float:
    return _epoch_us(json.loads(m.payload)["ts"]) / 1e6 - NOW_US / 1e6


FAULT_CHECKS: dict[str, Any] = {
    "invalid_json": lambda m: m.payload.decode() and _rejected_by_strict_json(m.payload),
    "invalid_utf8": lambda m: not _is_utf8(m.payload),
    "not_an_object": lambda m: not isinstance(json.loads(m.payload), dict | list),
    "empty_payload": lambda m: m.payload == b"",
    "nan": lambda m: b"NaN" in m.payload and _rejected_by_strict_json(m.payload),
    "infinity": lambda m: b"Infinity" in m.payload and _rejected_by_strict_json(m.payload),
    "huge_number": lambda m: math.isinf(_first_value(m)),
    "null_value": lambda m: _first_value(m) is None,
    "bool_value": lambda m: _first_value(m) is True,
    "text_value": lambda m: _first_value(m) == "wet",
    "nested_value": lambda m: isinstance(_first_value(m), dict),
    "duplicate_keys": lambda m: _rejected_by_strict_json(m.payload) and json.loads(m.payload),
    "future_ts": lambda m: _ts_offset(m) > 3600,
    "ancient_ts": lambda m: _ts_offset(m) < -2 * 365 * DAY,
    "unknown_uid": lambda m: m.uid != "probe-1" and UID_PATTERN.fullmatch(m.uid) and f"farm/{m.uid}/" in m.topic,
    "forbidden_uid": lambda m: not UID_PATTERN.fullmatch(m.topic.split("/")[1]),
    "huge_payload": lambda m: len(m.payload) > 64 * 1024 and json.loads(m.payload),
    "partly_bad_array": lambda m: len(json.loads(m.payload)) > len(m.readings) == 2,
    "bad_status": lambda m: m.topic.endswith("/status") and m.payload not in (b"online", b"offline"),
    "chirpstack_no_object": lambda m: m.topic.endswith("/event/up") and "object" not in json.loads(m.payload),
    "ttn_no_decoded_payload": lambda m: "decoded_payload" not in json.loads(m.payload)["uplink_message"],
}


def test_every_fault_has_a_check() -> None:
    assert set(FAULT_CHECKS) == set(MALFORMED_KINDS)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_malformed_kind_is_bad_in_its_own_way(kind: str) -> None:
    shape = {"chirpstack_no_object": "chirpstack", "ttn_no_decoded_payload": "ttn"}.get(kind, "native")
    uid = "probe-1" if shape == "native" else "a84041000181c002"
    device = replace(_device(uid, keys=("soil_moisture",), shape=shape), ts_style="ms")
    message = malformed_message(kind, device, NOW_US, {"soil_moisture": 31.2}, serial=3)
    assert message.kind == kind
    assert message.shape == "malformed"
    assert FAULT_CHECKS[kind](message)
    if kind == "partly_bad_array":
        assert {ts for ts, _ in message.readings} == {NOW_US, NOW_US - 1_000}
    else:
        assert message.readings == ()


# --- publishing through a real broker -------------------------------------------------------------


class Collector:
    """A QoS 1 subscriber to every topic the simulator publishes on, recording what arrives."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-test-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(TELEMETRY_FILTERS)
        self.client.on_subscribe = lambda *args: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(5), "no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload))

    def received(self, topics: set[str]) -> list[tuple[str, bytes]]:
        with self._lock:
            return [m for m in self.messages if m[0] in topics]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collector(mosquitto) -> Iterator[Collector]:
    sub = Collector(mosquitto.port)
    yield sub
    sub.close()


def test_every_acked_message_reaches_a_subscriber_exactly_once(mosquitto, collector: Collector) -> None:
    site = site_for(farm_slug="e2e-farm", time_zone="Australia/Sydney", latitude=-33.9)
    devices = synthetic_devices(
        30, keys=catalogue_keys(3), site=site, farm_slug="e2e-farm", shape="mixed", seed=910_001, allow_seconds=False
    )
    config = SimConfig(
        url=mosquitto.url, devices=devices, rate=math.inf, max_messages=1200, clients=3, window=8,
        malformed=0.2, track=True,
    )  # fmt: skip
    summary = run_simulation(config)

    wait_until(lambda: len(collector.messages) >= summary.total_acked, timeout=15)
    assert summary.total_published == summary.total_acked == 1200
    assert summary.unacked == summary.refused == summary.lost == 0
    time.sleep(0.2)  # a duplicate would arrive now
    assert len(collector.messages) == 1200
    assert summary.peak_inflight == 8  # the window fills and holds: never more unacked per client
    assert set(summary.acked) == {"native", "chirpstack", "ttn", "malformed"}
    assert set(summary.malformed) == set(MALFORMED_KINDS)


def test_acked_readings_are_exactly_what_subscribers_can_read(mosquitto, collector: Collector) -> None:
    site = site_for(farm_slug="exact", time_zone="UTC")
    devices = synthetic_devices(
        12, keys=catalogue_keys(10), site=site, farm_slug="exact", shape="mixed", seed=910_002, allow_seconds=False
    )
    summary = run_simulation(
        SimConfig(url=mosquitto.url, devices=devices, rate=math.inf, max_messages=600, clients=2, track=True)
    )
    wait_until(lambda: len(collector.messages) >= summary.total_acked, timeout=15)
    from_the_wire = set().union(*(contract_readings(t, p) for t, p in collector.messages))
    expected = {(uid, key, round(ts.timestamp() * 1_000_000)) for uid, key, ts in acked_readings(summary)}
    assert summary.total_acked == 600
    assert from_the_wire == expected
    assert len(expected) == 10 * summary.total_acked  # every message its own timestamp: distinct readings


def test_a_device_that_drops_off_says_offline_and_comes_back_with_its_buffer(
    mosquitto,
    collector: Collector,
) -> None:
    device = _device("sim-dropout-1", keys=("soil_moisture",), shape="native", seed=910_003)
    # A dropout lasts 4-12 periods and starts in the first half of a 40-period stretch: 3 s at a
    # 40 ms period always holds a whole one, and a loaded machine's stalls rarely eat 4 of its ticks.
    config = SimConfig(url=mosquitto.url, devices=[device], interval=0.04, dropout=1.0, duration=3.0, seed=3)
    summary = run_simulation(config)
    topics = {"farm/sim-dropout-1/status", "farm/sim-dropout-1/telemetry"}
    wait_until(lambda: len(collector.received(topics)) >= summary.total_acked, timeout=5)
    events = [
        p.decode() if t.endswith("status") else ("array" if p.startswith(b"[") else "object")
        for t, p in collector.received(topics)
    ]
    gone = events.index("offline")
    back = events.index("online", gone)
    assert events[gone + 1 : back] == []  # silent while away
    assert events[back + 1] == "array"  # the buffer, then life as usual
    assert events[back + 2] == "object"
    array = json.loads(next(p for _, p in collector.received(topics) if p.startswith(b"[")))
    # How many readings a dropout buffers depends on how long it lasted in wall-clock time,
    # which a loaded machine stretches or shrinks: several, in order, is the behaviour.
    assert len(array) >= 2
    assert [item["ts"] for item in array] == sorted(item["ts"] for item in array)


def test_dropouts_are_a_pure_function_of_seed_and_time() -> None:
    device = _device("sim-dropout-2")
    timeline = [is_dropped(device, JULY + k, 1.0, 0.5) for k in range(400)]
    assert timeline == [is_dropped(device, JULY + k, 1.0, 0.5) for k in range(400)]
    assert 0 < sum(timeline) < 400
    assert not any(is_dropped(device, JULY + k, 1.0, 0.0) for k in range(400))


def test_the_broker_publishes_the_last_will_when_the_simulator_dies(mosquitto, collector: Collector) -> None:
    publisher = Publisher(mosquitto.url, clients=2, wills=[status_message("sim-will-1", online=False), None])
    publisher.connect()
    publisher.drop()
    wait_until(lambda: collector.received({"farm/sim-will-1/status"}) == [("farm/sim-will-1/status", b"offline")],
               timeout=5, what="the Last Will")  # fmt: skip


def test_qos_0_counts_messages_written_to_the_socket(mosquitto, collector: Collector) -> None:
    devices = [_device("sim-qos0-1", keys=("rain",), shape="native", allow_seconds=False)]
    summary = run_simulation(SimConfig(url=mosquitto.url, devices=devices, rate=math.inf, max_messages=50, qos=0))
    assert summary.total_acked == summary.total_published == 50
    assert any("QoS 0" in line for line in summary.lines())


def test_a_stop_request_ends_a_flat_out_run_with_nothing_left_unacked(mosquitto) -> None:
    stop = threading.Event()
    devices = synthetic_devices(5, keys=("soil_moisture",), site=Site(seed=1), farm_slug="f", shape="native", seed=4)
    threading.Timer(0.3, stop.set).start()
    summary = run_simulation(SimConfig(url=mosquitto.url, devices=devices, rate=math.inf, stop=stop))
    assert summary.total_published > 0
    assert summary.unacked == 0
    assert summary.total_acked == summary.total_published


def test_an_unreachable_broker_is_a_clear_error() -> None:
    from sensors.simulator.mqtt import PublishError
    from tests.mqtt_fixtures import free_port

    with pytest.raises(PublishError, match="cannot reach the MQTT broker"):
        run_simulation(SimConfig(url=f"mqtt://127.0.0.1:{free_port()}", devices=[_device()], max_messages=1))


# --- the command --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_plays_the_enabled_devices_of_one_farm(mosquitto, collector: Collector) -> None:
    farm = FarmFactory(time_zone="Pacific/Auckland")
    kind = DeviceKindFactory(expected_interval=600)
    MetricSpecFactory(kind=kind, key="soil_moisture")
    MetricSpecFactory(kind=kind, key="leaf_wetness", label="Leaf wetness", min_value=0, max_value=15)
    playing = DeviceFactory(farm=farm, kind=kind, uid="sim-cmd-on")
    DeviceFactory(farm=farm, kind=kind, uid="sim-cmd-off", enabled=False)
    DeviceFactory(kind=kind, uid="sim-cmd-elsewhere")
    out = StringIO()
    call_command("simulate", "--farm", farm.slug, "--interval", "0.05", "--count", "8", "--dropout", "0",
                 "--url", mosquitto.url, "--report", "0", stdout=out)  # fmt: skip
    assert "Simulating 1 devices (1 native), schedule, QoS 1." in out.getvalue()
    assert "published 8, acked (PUBACK) 8" in out.getvalue()
    topics = {
        f"farm/{uid}/{k}" for uid in ("sim-cmd-on", "sim-cmd-off", "sim-cmd-elsewhere") for k in ("telemetry", "status")
    }
    wait_until(lambda: len(collector.received(topics)) >= 8, timeout=5)
    received = collector.received(topics)
    assert {t for t, _ in received} == {f"farm/{playing.uid}/status", f"farm/{playing.uid}/telemetry"}
    readings = [json.loads(p) for t, p in received if t.endswith("telemetry")]
    values = [r.get("values", r) for r in readings]
    assert all(0 <= v["leaf_wetness"] <= 15 and 0 <= v["soil_moisture"] <= 100 for v in values)  # unknown key: in range


@pytest.mark.django_db
def test_the_command_explains_what_it_cannot_do() -> None:
    with pytest.raises(CommandError, match="No enabled devices"):
        call_command("simulate", "--farm", "no-such-farm", "--count", "1")
    with pytest.raises(CommandError, match="--register needs"):
        call_command("simulate", "--synthetic", "3", "--register")
    with pytest.raises(CommandError, match="unknown fault"):
        call_command("simulate", "--synthetic", "3", "--faults", "nan,gibberish")


@pytest.mark.django_db
def test_synthetic_devices_can_be_registered_with_their_sensors() -> None:
    farm = cast(Farm, FarmFactory())
    devices = synthetic_devices(4, keys=catalogue_keys(10), site=Site(seed=1), farm_slug=farm.slug, seed=910_004)
    assert synthetic_devices_register(farm=farm, devices=devices) == 4
    assert synthetic_devices_register(farm=farm, devices=devices) == 0
    registered = Device.objects.filter(uid__in=[d.uid for d in devices])
    assert {d.farm_id for d in registered} == {farm.id}
    assert Sensor.objects.filter(device__in=registered).count() == 40
    assert set(Sensor.objects.filter(device__in=registered).values_list("key", flat=True)) == set(catalogue_keys(10))


def test_sigterm_stops_the_command_cleanly_with_a_summary(mosquitto) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "farm.settings_test", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(ROOT / "manage.py"), "simulate", "--synthetic", "20", "--seed", "910005",
               "--rate", "300", "--url", mosquitto.url, "--report", "0"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline().startswith(b"Simulating 20 devices")
    time.sleep(0.7)  # publishing at 300 msg/s
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    published, acked = map(int, re.search(rb"published (\d+), acked \(PUBACK\) (\d+)", out).groups())  # type: ignore[union-attr]
    assert published == acked > 0
    assert b"unacked 0" in out


def test_backfill_republishes_the_same_history_on_the_interval_grid(mosquitto) -> None:
    native = _device("sim-backfill-1", keys=("soil_moisture",), interval=600, shape="native")
    lorawan = _device("a84041000181b0f1", keys=("air_temperature",), interval=600)

    def history() -> dict[tuple[str, tuple[str, ...]], list[int]]:
        config = SimConfig(url=mosquitto.url, devices=[native, lorawan], backfill_hours=1, duration=0.5, track=True)
        with time_machine.travel(datetime(2025, 7, 1, 12, 0, 5, tzinfo=UTC), tick=True):
            return run_simulation(config).acked_ts

    first = history()
    stamps = first[("sim-backfill-1", ("soil_moisture",))]
    assert len(stamps) == 6
    assert stamps[-1] == datetime(2025, 7, 1, 12, tzinfo=UTC).timestamp() * 1_000_000
    assert all(ts % 600_000_000 == 0 for ts in stamps)
    assert first[("a84041000181b0f1", ("air_temperature",))] == stamps
    assert history() == first  # a restarted demo: the same timestamps, so no duplicate rows
