"""Bad device input through the store: what is kept, what is counted, what is dead-lettered (real PostgreSQL)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from django.utils import timezone

from sensors import selectors
from sensors.ingest.store import METRIC_LIMIT_FIELD, NEW_METRICS_PER_MESSAGE, SKIPPED_FIELDS_PER_DEVICE
from sensors.ingest.worker import Ingestor, RawMessage, WorkerConfig
from sensors.models import DeadLetter, Device, Reading, Sensor, SkippedField
from sensors.tasks import purge_ingest_records
from tests.factories import DeviceFactory, MetricSpecFactory

NOW_S = int(time.time())


def make_ingestor(max_extra_metrics: int | None = None) -> Ingestor:
    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="test-bad-input"))
    ingestor.registry.check_interval = 0
    if max_extra_metrics is not None:
        ingestor.registry.max_extra_metrics = max_extra_metrics
    return ingestor


@pytest.fixture
def ingestor() -> Ingestor:
    return make_ingestor()


@pytest.fixture
def probe(db) -> Device:
    spec = MetricSpecFactory(key="soil_moisture")
    return cast(Device, DeviceFactory(uid="probe-1", kind=spec.kind))


def raw(payload: object, *, received_s: float = NOW_S, uid: str = "probe-1") -> RawMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return RawMessage(f"farm/{uid}/telemetry".encode(), body, False, int(received_s * 1_000_000))


def stored(device: Device) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for key, value in Reading.objects.filter(sensor__device=device).order_by("ts").values_list("sensor__key", "value"):
        out.setdefault(key, []).append(value)
    return out


# --- NaN, infinities and huge values cost only themselves ------------------------------------------


def test_it_stores_the_finite_values_of_a_message_with_nan_and_counts_the_skipped_key(ingestor, probe):
    ingestor.ingest([raw(b'{"soil_moisture": 31.5, "soil_temperature": NaN, "rain": Infinity}')])

    assert stored(probe) == {"soil_moisture": [31.5]}
    assert not DeadLetter.objects.exists()
    assert sorted(SkippedField.objects.values_list("field", "category", "example", "count")) == [
        ("rain", "not_finite", "Infinity", 1),
        ("soil_temperature", "not_finite", "NaN", 1),
    ]


def test_it_dead_letters_a_message_whose_only_value_is_nan(ingestor, probe):
    ingestor.ingest([raw(b'{"soil_moisture": NaN}')])

    letter = DeadLetter.objects.get()
    assert (letter.category, Reading.objects.count()) == ("no_values", 0)
    assert "'soil_moisture' (not a finite number: NaN)" in letter.reason


def test_a_huge_finite_value_is_skipped_and_its_neighbour_stored(ingestor, probe):
    # The reproduction of the dashboard outage: both used to be stored, then avg() overflowed.
    body = [{"ts": NOW_S - 60, "soil_moisture": 1e155}, {"ts": NOW_S - 59, "soil_moisture": 1}]

    ingestor.ingest([raw(body)])

    assert stored(probe) == {"soil_moisture": [1.0]}
    row = SkippedField.objects.get()
    assert (row.field, row.category, row.example) == ("soil_moisture", "too_large", "1e+155")


def test_skipped_fields_count_per_device_and_field_across_batches(ingestor, probe):
    ingestor.ingest([raw({"soil_moisture": 1, "note": "a"}, received_s=NOW_S - 10)])
    ingestor.ingest([raw({"soil_moisture": 2, "note": "b"}), raw({"soil_moisture": 3, "note": "c"})])

    row = SkippedField.objects.get()
    assert (row.field, row.count, row.example) == ("note", 3, "'c'")
    assert (row.first_seen, row.last_seen) == (
        datetime.fromtimestamp(NOW_S - 10, tz=UTC),
        datetime.fromtimestamp(NOW_S, tz=UTC),
    )


def test_a_device_counts_at_most_its_cap_of_distinct_skipped_fields(ingestor, probe):
    fields = {f"note_{n}": "x" for n in range(SKIPPED_FIELDS_PER_DEVICE + 5)}
    messages = [raw({"soil_moisture": n, **dict(list(fields.items())[n * 15 : (n + 1) * 15])}) for n in range(7)]

    for message in messages:
        ingestor.ingest([message])

    assert SkippedField.objects.filter(device=probe).count() == SKIPPED_FIELDS_PER_DEVICE


# --- runaway sensor creation --------------------------------------------------------------------


def test_a_message_with_2000_new_keys_creates_at_most_the_per_message_bound(ingestor, probe):
    body = {"soil_moisture": 20, **{f"k{n:05d}": n for n in range(2000)}}

    ingestor.ingest([raw(body)])

    keys = set(probe.sensors.values_list("key", flat=True))
    assert keys == {"soil_moisture", *(f"k{n:05d}" for n in range(NEW_METRICS_PER_MESSAGE))}
    row = SkippedField.objects.get(field=METRIC_LIMIT_FIELD)
    assert (row.category, row.count) == ("metric_limit", 2000 - NEW_METRICS_PER_MESSAGE)
    assert "INGEST_MAX_EXTRA_METRICS" in row.reason
    assert selectors.device_list().get(pk=probe.pk).needs_review  # type: ignore[attr-defined]
    assert not DeadLetter.objects.exists()


def test_the_device_bound_holds_across_batches(probe):
    ingestor = make_ingestor(max_extra_metrics=20)

    for batch in range(3):
        body = {"soil_moisture": batch, **{f"b{batch}_{n}": n for n in range(10)}}
        ingestor.ingest([raw(body, received_s=NOW_S + batch)])

    assert probe.sensors.count() == 1 + 20
    assert SkippedField.objects.get(field=METRIC_LIMIT_FIELD).count == 10
    assert stored(probe)["soil_moisture"] == [0.0, 1.0, 2.0]


def test_the_device_bound_holds_for_a_second_worker_whose_registry_is_behind(probe):
    first, second = make_ingestor(max_extra_metrics=5), make_ingestor(max_extra_metrics=5)
    second.registry.refresh(force=True)
    second.registry.check_interval = 3600  # it will not see what the first worker creates

    first.ingest([raw({f"a{n}": n for n in range(5)})])
    second.ingest([raw({"soil_moisture": 1, "late_1": 1, "late_2": 2})])

    assert sorted(probe.sensors.values_list("key", flat=True)) == ["a0", "a1", "a2", "a3", "a4", "soil_moisture"]
    assert SkippedField.objects.get(field=METRIC_LIMIT_FIELD).example == "late_1, late_2"


def test_a_metric_the_kind_lists_is_created_even_at_the_bound(probe):
    ingestor = make_ingestor(max_extra_metrics=0)
    MetricSpecFactory(kind=probe.kind, key="soil_temperature")

    ingestor.ingest([raw({"soil_temperature": 9, "unlisted": 1})])

    assert set(probe.sensors.values_list("key", flat=True)) == {"soil_temperature"}


def test_a_message_with_only_keys_over_the_bound_is_a_dead_letter(probe):
    ingestor = make_ingestor(max_extra_metrics=0)

    ingestor.ingest([raw({"x1": 1, "x2": 2, "note": "hi"})])

    letter = DeadLetter.objects.get()
    assert letter.category == "metric_limit"
    assert letter.reason.startswith("Nothing stored: 2 new metric keys beyond this device's bound")
    assert "(x1, x2)" in letter.reason
    assert "Also skipped: 'note' (text 'hi')" in letter.reason
    assert not Sensor.objects.filter(key__startswith="x").exists()


def test_marking_a_device_reviewed_clears_its_flag(ingestor, probe):
    ingestor.ingest([raw({"soil_moisture": 1, **{f"k{n}": n for n in range(40)}})])
    from sensors.services import devices_mark_reviewed

    devices_mark_reviewed(devices=Device.objects.filter(pk=probe.pk))

    assert not selectors.device_list().get(pk=probe.pk).needs_review  # type: ignore[attr-defined]


# --- dead letters: categories and the purge -----------------------------------------------------


def test_dead_letters_carry_a_category(ingestor, probe):
    DeviceFactory(uid="off-1", enabled=False)

    ingestor.ingest([raw(b"soil=1"), raw({"soil_moisture": 1}, uid="off-1"), raw({"ts": NOW_S + 9999, "x": 1})])

    assert sorted(DeadLetter.objects.values_list("category", flat=True)) == ["disabled", "payload", "time"]


def test_the_purge_task_forgets_old_dead_letters_and_skipped_fields_only(ingestor, probe, settings):
    settings.INGEST_RECORDS_RETENTION_DAYS = 30
    old = NOW_S - 31 * 86400
    ingestor.ingest([raw(b"old junk", received_s=old), raw({"soil_moisture": 1, "old_note": "x"}, received_s=old)])
    ingestor.ingest(
        [raw(b"recurring junk", received_s=old), raw(b"new junk"), raw({"soil_moisture": 2, "new_note": "y"})]
    )
    DeadLetter.objects.filter(payload_size=14).update(
        last_received_at=timezone.now()
    )  # first seen long ago, still arriving

    assert purge_ingest_records() == 2

    assert sorted(DeadLetter.objects.values_list("payload_size", flat=True)) == [8, 14]
    assert list(SkippedField.objects.values_list("field", flat=True)) == ["new_note"]


def test_the_purge_is_on_the_beat_schedule(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["sensors-purge-ingest-records"]

    assert entry["task"] == purge_ingest_records.name
    assert timedelta(seconds=entry["schedule"]) <= timedelta(hours=1)
