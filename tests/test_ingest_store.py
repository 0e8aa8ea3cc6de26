"""Storing a batch: readings, sensors, devices, unknown devices and dead letters (real PostgreSQL)."""

from __future__ import annotations

import json
import threading
import time
from typing import cast

import psycopg
import pytest
from django.db import OperationalError, connection

from sensors.history.selectors import with_latest
from sensors.hooks import BatchOutcome, register_batch_notifier, unregister_batch_notifier
from sensors.ingest import pipeline as worker_module
from sensors.ingest.decode import EPOCH, ONE_US
from sensors.ingest.pipeline import Ingestor, RawMessage, WorkerConfig
from sensors.ingest.store import dead_letter_fingerprint
from sensors.models import DEAD_LETTER_MAX_BYTES, DeadLetter, Device, Reading, Sensor, SkippedField, UnknownDevice
from tests.factories import DeviceFactory, MetricSpecFactory, SensorFactory
from tests.mqtt_fixtures import wait_until

NOW_S = int(time.time())


@pytest.fixture
def ingestor():
    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="test-store"))
    ingestor.registry.check_interval = 0  # see admin changes at once
    return ingestor


def raw(topic: str, payload: object, *, retained: bool = False, received_s: float | None = None) -> RawMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    received = NOW_S if received_s is None else received_s
    return RawMessage(topic.encode(), body, retained, int(received * 1_000_000))


def moment(epoch_s: float):
    return EPOCH + int(epoch_s * 1_000_000) * ONE_US


@pytest.fixture
def probe(db) -> Device:
    sensor = cast(Sensor, SensorFactory(device__uid="probe-1", key="soil_moisture"))
    return sensor.device


def test_it_stores_readings_and_updates_the_sensor_and_the_device(ingestor, probe):
    result = ingestor.ingest(
        [
            raw("farm/probe-1/telemetry", {"ts": NOW_S - 120, "soil_moisture": 30.5}),
            raw("farm/probe-1/telemetry", {"ts": NOW_S - 60, "soil_moisture": 31.5}, received_s=NOW_S + 1),
        ]
    )

    sensor = probe.sensors.get()
    assert sorted(Reading.objects.filter(sensor=sensor).values_list("ts", "value")) == [
        (moment(NOW_S - 120), 30.5),
        (moment(NOW_S - 60), 31.5),
    ]
    latest = with_latest(Sensor.objects.filter(pk=sensor.pk)).get()
    assert (latest.last_value, latest.last_ts) == (31.5, moment(NOW_S - 60))
    probe.refresh_from_db()
    assert (probe.status, probe.last_seen) == ("online", moment(NOW_S + 1))
    assert (result.messages, result.readings, result.inserted, result.dead_letters) == (2, 2, 2, 0)


def test_a_redelivered_message_does_not_duplicate_rows(ingestor, probe):
    message = raw("farm/probe-1/telemetry", {"ts": NOW_S - 60, "soil_moisture": 30})

    first = ingestor.ingest([message])
    again = ingestor.ingest([message, message])

    assert Reading.objects.count() == 1
    assert (first.inserted, again.inserted, again.readings) == (1, 0, 2)


def test_a_first_seen_metric_key_becomes_a_sensor_flagged_for_review(ingestor, probe):
    ingestor.ingest([raw("farm/probe-1/telemetry", {"leaf_wetness": 12})])

    sensor = with_latest(probe.sensors.filter(key="leaf_wetness")).get()
    assert (sensor.label, sensor.needs_review, sensor.last_value) == ("Leaf wetness", True, 12.0)
    assert Reading.objects.get(sensor=sensor).value == 12.0


def test_a_metric_the_kind_lists_becomes_a_sensor_with_the_kind_label_and_unit(ingestor, probe):
    MetricSpecFactory(kind=probe.kind, key="air_temperature", label="Air temperature", unit="°C", min_value=-40,
                      max_value=60)  # fmt: skip

    ingestor.ingest([raw("farm/probe-1/telemetry", {"air_temperature": 18})])

    sensor = probe.sensors.get(key="air_temperature")
    assert (sensor.label, sensor.unit, sensor.min_value, sensor.needs_review) == ("Air temperature", "°C", -40, False)


def test_an_unknown_uid_is_recorded_with_counts_and_its_last_payload(ingestor, db):
    ingestor.ingest([raw("farm/stray-1/telemetry", {"x": 1}), raw("farm/stray-1/telemetry", {"x": 2})])
    ingestor.ingest([raw("farm/stray-1/telemetry", {"x": 3}, received_s=NOW_S + 5)])

    record = UnknownDevice.objects.get(uid="stray-1")
    assert (record.message_count, record.source, record.topic) == (3, "native", "farm/stray-1/telemetry")
    assert json.loads(record.last_payload) == {"x": 3}
    assert (record.first_seen, record.last_seen) == (moment(NOW_S), moment(NOW_S + 5))
    assert Reading.objects.count() == 0


def test_an_unknown_lorawan_device_is_recorded_by_its_deveui(ingestor, db):
    body = {"deviceInfo": {"devEui": "0004A30B001C0530"}, "object": {"t": 1}}
    ingestor.ingest([raw("application/a/device/0004a30b001c0530/event/up", body)])

    assert UnknownDevice.objects.get().uid == "0004a30b001c0530"
    assert UnknownDevice.objects.get().source == "chirpstack"


def test_once_an_admin_registers_an_unknown_uid_its_next_messages_are_stored(ingestor, db):
    ingestor.ingest([raw("farm/new-1/telemetry", {"soil_moisture": 1})])
    device = cast(Device, DeviceFactory(uid="new-1"))

    ingestor.ingest([raw("farm/new-1/telemetry", {"ts": NOW_S - 1, "soil_moisture": 2})])

    assert list(Reading.objects.filter(sensor__device=device).values_list("value", flat=True)) == [2.0]


def test_a_disabled_device_has_its_messages_dead_lettered(ingestor, db):
    DeviceFactory(uid="off-1", enabled=False)

    ingestor.ingest([raw("farm/off-1/telemetry", {"soil_moisture": 1})])

    assert Reading.objects.count() == 0
    assert "is disabled" in DeadLetter.objects.get().reason


def test_bad_messages_become_dead_letters_with_topic_payload_and_reason(ingestor, probe):
    big = b'{"x": "' + b"a" * 70_000 + b'"}'
    ingestor.ingest(
        [
            raw("farm/probe-1/telemetry", b"not json"),
            raw("farm/probe-1/telemetry", big),
            raw("farm/probe-1/telemetry", {"ts": NOW_S - 1, "soil_moisture": 7}),
        ]
    )

    letters = {letter.payload_size: letter for letter in DeadLetter.objects.all()}
    assert bytes(letters[8].payload) == b"not json"
    assert "not JSON" in letters[8].reason
    assert (len(bytes(letters[len(big)].payload)), letters[len(big)].source) == (DEAD_LETTER_MAX_BYTES, "native")
    assert "INGEST_MAX_PAYLOAD" in letters[len(big)].reason
    assert letters[8].topic == "farm/probe-1/telemetry"
    assert Reading.objects.get().value == 7.0  # the good message beside them is stored


def test_skipped_parts_of_a_stored_message_are_counted_per_field_not_dead_lettered(ingestor, probe):
    ingestor.ingest([raw("farm/probe-1/telemetry", {"soil_moisture": 3, "note": "dry"})])

    assert Reading.objects.get().value == 3.0
    assert not DeadLetter.objects.exists()
    assert list(SkippedField.objects.values_list("device", "field", "category", "reason", "example", "count")) == [
        (probe.pk, "note", "not_numeric", "text", "'dry'", 1)
    ]


def test_every_message_ends_in_exactly_one_outcome(ingestor, probe):
    DeviceFactory(uid="off-1", enabled=False)
    result = ingestor.ingest(
        [
            raw("farm/probe-1/telemetry", {"ts": NOW_S - 3, "soil_moisture": 1}),  # readings
            raw("farm/probe-1/telemetry", b"{oops"),  # dead letter
            raw("farm/ghost/telemetry", {"soil_moisture": 1}),  # unknown device
            raw("farm/off-1/telemetry", {"soil_moisture": 1}),  # dead letter: disabled
            raw("farm/probe-1/status", b"offline"),  # status
        ]
    )

    assert (result.messages, result.readings, result.dead_letters, result.unknown, result.statuses) == (5, 1, 2, 1, 1)
    assert (Reading.objects.count(), DeadLetter.objects.count(), UnknownDevice.objects.count()) == (1, 2, 1)


def test_an_offline_status_applies_in_its_batch_and_the_last_event_wins(ingestor, probe):
    ingestor.ingest([raw("farm/probe-1/telemetry", {"soil_moisture": 1}), raw("farm/probe-1/status", b"offline")])
    probe.refresh_from_db()
    assert probe.status == "offline"

    ingestor.ingest(
        [raw("farm/probe-1/status", b"offline"), raw("farm/probe-1/status", b"online", received_s=NOW_S + 9)]
    )
    probe.refresh_from_db()
    assert (probe.status, probe.last_seen) == ("online", moment(NOW_S + 9))


def test_an_offline_last_will_does_not_count_as_the_device_being_seen(ingestor, probe):
    ingestor.ingest([raw("farm/probe-1/status", b"offline")])

    probe.refresh_from_db()
    assert (probe.status, probe.last_seen) == ("offline", None)


def test_a_retained_status_only_fills_in_a_status_furrow_never_had(ingestor, db):
    fresh = cast(Device, DeviceFactory(uid="fresh-1"))
    known = cast(Device, DeviceFactory(uid="known-1", status="online"))

    ingestor.ingest(
        [raw("farm/fresh-1/status", b"offline", retained=True), raw("farm/known-1/status", b"offline", retained=True)]
    )

    fresh.refresh_from_db()
    known.refresh_from_db()
    assert (fresh.status, known.status) == ("offline", "online")
    assert fresh.last_seen is None


def test_battery_rssi_and_snr_update_the_device_once_per_batch(ingestor, probe):
    ingestor.ingest(
        [
            raw("farm/probe-1/telemetry", {"ts": NOW_S - 20, "battery": 80, "rssi": -90}),
            raw("farm/probe-1/telemetry", {"ts": NOW_S - 10, "battery": 79}),
        ]
    )

    probe.refresh_from_db()
    assert (probe.battery, probe.rssi, probe.snr) == (79.0, -90.0, None)
    assert Sensor.objects.filter(device=probe, key="battery").exists()  # battery is a reading too


def test_lorawan_link_health_comes_from_the_best_gateway(ingestor, db):
    device = cast(Device, DeviceFactory(uid="0004a30b001c0530"))
    body = {
        "end_device_ids": {"dev_eui": "0004A30B001C0530"},
        "uplink_message": {
            "decoded_payload": {"t": 1},
            "rx_metadata": [{"rssi": -110, "snr": -7}, {"rssi": -95, "snr": 2}],
        },
    }

    ingestor.ingest([raw("v3/app@t/devices/probe/up", body)])

    device.refresh_from_db()
    assert (device.rssi, device.snr, device.status) == (-95.0, 2.0, "online")


def test_hooks_get_the_batch_after_it_commits(ingestor, probe, django_capture_on_commit_callbacks):
    seen: list[BatchOutcome] = []
    register_batch_notifier(seen.append)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            ingestor.ingest([raw("farm/probe-1/telemetry", {"ts": NOW_S - 5, "soil_moisture": 4})])
            assert seen == []  # nothing before the commit
        for callback in callbacks:
            callback()
    finally:
        unregister_batch_notifier(seen.append)

    (outcome,) = seen
    (reading,) = outcome.stored_readings()
    sensor = probe.sensors.get()
    assert (reading.farm_id, reading.device_id, reading.sensor_id) == (probe.farm_id, probe.id, sensor.id)
    assert (reading.ts, reading.value) == (moment(NOW_S - 5), 4.0)
    assert [(d.device_id, d.status) for d in outcome.devices] == [(probe.id, "online")]


def test_an_internal_error_decoding_one_message_costs_only_that_message(ingestor, probe, monkeypatch):
    real = worker_module.decode_message

    def flaky(topic, payload, **kwargs):
        if payload == b'{"boom": 1}':
            raise RuntimeError("bug")
        return real(topic, payload, **kwargs)

    monkeypatch.setattr(worker_module, "decode_message", flaky)

    ingestor.ingest([raw("farm/probe-1/telemetry", {"boom": 1}), raw("farm/probe-1/telemetry", {"soil_moisture": 5})])

    assert Reading.objects.get().value == 5.0
    assert DeadLetter.objects.get().reason == "Internal error while decoding this message: RuntimeError('bug')"
    assert ingestor.stats.internal_errors == 1


def test_an_internal_error_storing_a_batch_isolates_the_poison_message(ingestor, probe, monkeypatch):
    real = worker_module.store_batch

    def flaky(*, messages, **kwargs):
        if any(m.payload == b'{"soil_moisture": 666}' for m in messages):
            raise ValueError("poison")
        return real(messages=messages, **kwargs)

    monkeypatch.setattr(worker_module, "store_batch", flaky)

    result = ingestor.ingest(
        [
            raw("farm/probe-1/telemetry", {"ts": NOW_S - 2, "soil_moisture": 1}),
            raw("farm/probe-1/telemetry", b'{"soil_moisture": 666}'),
            raw("farm/probe-1/telemetry", {"ts": NOW_S - 1, "soil_moisture": 2}),
        ]
    )

    assert sorted(Reading.objects.values_list("value", flat=True)) == [1.0, 2.0]
    assert DeadLetter.objects.get().reason == "Internal error while storing this message: ValueError('poison')"
    assert (result.messages, result.dead_letters) == (3, 1)


@pytest.mark.django_db(transaction=True)
def test_a_sensor_deleted_behind_the_cache_does_not_wedge_ingest():
    sensor = cast(Sensor, SensorFactory(device__uid="probe-9", key="soil_moisture"))
    device = sensor.device
    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="test-store"))
    ingestor.registry.check_interval = 3600  # the cache will not notice the deletion by itself
    ingestor.ingest([raw("farm/probe-9/telemetry", {"ts": NOW_S - 2, "soil_moisture": 1})])
    Sensor.objects.filter(device=device).delete()

    result = ingestor.ingest([raw("farm/probe-9/telemetry", {"ts": NOW_S - 1, "soil_moisture": 2})])

    assert result is not None
    assert list(Reading.objects.values_list("value", flat=True)) == [2.0]
    assert Device.objects.get(uid="probe-9").sensors.get().needs_review is True


# --- review fixes: dead-letter dedupe, lock order, conflicts, updated_at ---------------------------


def test_a_redelivered_bad_message_is_one_dead_letter_counting_its_deliveries(ingestor, probe):
    bad = raw("farm/probe-1/telemetry", b"soil=31")

    ingestor.ingest([bad, bad._replace(received_us=bad.received_us + 1_000_000)])
    result = ingestor.ingest([bad._replace(received_us=bad.received_us + 5_000_000)])

    letter = DeadLetter.objects.get()
    assert (letter.count, letter.received_at, letter.last_received_at) == (3, moment(NOW_S), moment(NOW_S + 5))
    assert letter.fingerprint == dead_letter_fingerprint(b"farm/probe-1/telemetry", b"soil=31")
    assert result.dead_letters == 1  # deliveries, as the stats count messages


def test_a_redelivered_part_good_message_counts_on_one_skipped_field_row(ingestor, probe):
    message = raw("farm/probe-1/telemetry", {"ts": NOW_S - 5, "soil_moisture": 3, "note": "dry"})

    ingestor.ingest([message])
    ingestor.ingest([message])

    assert Reading.objects.count() == 1
    assert not DeadLetter.objects.exists()
    assert list(SkippedField.objects.values_list("field", "count")) == [("note", 2)]


def test_the_same_payload_on_two_topics_is_two_dead_letters(ingestor, probe):
    ingestor.ingest([raw("farm/probe-1/telemetry", b"soil=31"), raw("farm/probe-2/telemetry", b"soil=31")])

    assert sorted(DeadLetter.objects.values_list("topic", "count")) == [
        ("farm/probe-1/telemetry", 1),
        ("farm/probe-2/telemetry", 1),
    ]


def test_storing_readings_leaves_the_devices_updated_at_alone(ingestor, probe):
    # updated_at is in the registry's fingerprint: touching it would reload the registry every batch.
    before = Device.objects.get(pk=probe.pk).updated_at

    ingestor.ingest([raw("farm/probe-1/telemetry", {"soil_moisture": 3}), raw("farm/probe-1/status", b"offline")])

    assert Device.objects.get(pk=probe.pk).updated_at == before


def _deadlock(cause_sqlstate: str) -> OperationalError:
    error = OperationalError("deadlock detected")
    error.__cause__ = type("PgError", (Exception,), {"sqlstate": cause_sqlstate})()
    return error


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_deadlock_or_serialization_failure_is_retried_at_once_not_waited_out_as_an_outage(
    ingestor, probe, monkeypatch, caplog, sqlstate
):
    real = worker_module.store_batch
    calls: list[int] = []

    def conflicting_once(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise _deadlock(sqlstate)
        return real(**kwargs)

    monkeypatch.setattr(worker_module, "store_batch", conflicting_once)

    ingestor.ingest([raw("farm/probe-1/telemetry", {"ts": NOW_S - 1, "soil_moisture": 2})])

    assert Reading.objects.get().value == 2.0
    assert (len(calls), ingestor.stats.db_conflicts, ingestor.stats.db_errors) == (2, 1, 0)
    assert ingestor.stats.database_ok is True
    assert "PostgreSQL unavailable" not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_two_writers_creating_the_same_sensors_queue_instead_of_deadlocking():
    # Another worker of the share group holds the new sensor of the lower device id and next
    # wants the higher one. Taking the keys in message order (higher id first) deadlocks.
    low, high = cast(Device, DeviceFactory(uid="low-1")), cast(Device, DeviceFactory(uid="high-1"))
    assert low.pk < high.pk
    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="test-store"))
    url = connection.settings_dict
    other = psycopg.connect(
        host=url["HOST"], port=url["PORT"] or 5432, user=url["USER"], dbname=url["NAME"], password=url["PASSWORD"]
    )
    insert = (
        "INSERT INTO sensors_sensor (device_id, key, label, unit, needs_review, created_at) "
        "VALUES (%s, 'leaf_wetness', 'Leaf wetness', '', true, now()) ON CONFLICT DO NOTHING"
    )
    errors: list[BaseException] = []
    try:
        other.execute(insert, [low.pk])
        worker = threading.Thread(
            target=lambda: ingestor.ingest(
                [raw(f"farm/{uid}/telemetry", {"ts": NOW_S - 1, "leaf_wetness": 5}) for uid in ("high-1", "low-1")]
            )
        )
        worker.start()
        wait_until(lambda: _waiting_on_a_lock(other), timeout=10, what="the ingest to wait for the other writer")
        try:
            other.execute(insert, [high.pk])
            other.commit()
        except psycopg.Error as exc:
            errors.append(exc)
            other.rollback()
        worker.join(timeout=30)
    finally:
        other.close()

    assert errors == []
    assert (ingestor.stats.db_errors, ingestor.stats.db_conflicts) == (0, 0)
    assert Reading.objects.count() == 2


def _waiting_on_a_lock(conn: psycopg.Connection) -> bool:
    # info.dsn leaves the password out; an embedded PostgreSQL wants it.
    with psycopg.connect(conninfo=conn.info.dsn, password=conn.info.password, autocommit=True) as probe:
        row = probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


def test_the_hook_outcome_names_each_devices_own_farm(ingestor, db, django_capture_on_commit_callbacks):
    farm = cast(Device, DeviceFactory(uid="first-1")).farm
    DeviceFactory(uid="second-1", farm=farm)  # two devices, one farm: a device id and a farm id must differ
    seen: list[BatchOutcome] = []
    register_batch_notifier(seen.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            ingestor.ingest([raw(f"farm/{uid}/telemetry", {"soil_moisture": 1}) for uid in ("first-1", "second-1")])
    finally:
        unregister_batch_notifier(seen.append)

    expected = set(Device.objects.values_list("farm_id", "id"))
    assert {(d.farm_id, d.device_id) for d in seen[0].devices} == expected
