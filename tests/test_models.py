"""Farm and device model rules, the database constraints behind them, shipped kinds and registration services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from farm.models import Farm, Field
from sensors import services
from sensors.models import Device, DeviceKind, MetricSpec, Sensor, UnknownDevice, normalize_uid, validate_uid
from tests.factories import (
    DeviceFactory,
    DeviceKindFactory,
    FarmFactory,
    FieldFactory,
    MetricSpecFactory,
    SensorFactory,
    UnknownDeviceFactory,
)

pytestmark = pytest.mark.django_db

SHIPPED = {
    "soil-probe": ["soil_moisture", "soil_temperature", "soil_ec"],
    "air-th": ["air_temperature", "air_humidity"],
    "rain-gauge": ["rain"],
    "weather-station": [
        "air_temperature",
        "air_humidity",
        "pressure",
        "wind_speed",
        "wind_direction",
        "rain",
        "solar_radiation",
    ],
    "water-level": ["water_level"],
    "battery-monitor": ["battery"],
}


@pytest.fixture
def probe_kind() -> DeviceKind:
    kind = DeviceKindFactory.create(expected_interval=600)
    MetricSpecFactory.create(
        kind=kind, key="soil_moisture", label="Soil moisture", unit="%", min_value=0, max_value=100
    )
    MetricSpecFactory.create(
        kind=kind, key="soil_temperature", label="Soil temperature", unit="°C", min_value=-30, max_value=70
    )
    return kind


def register(**overrides) -> Device:
    farm = overrides.pop("farm", None) or FarmFactory.create()
    kind = overrides.pop("kind", None) or DeviceKind.objects.get(slug="soil-probe")
    values = {"uid": "probe-1", "name": "Probe 1", "farm": farm, "kind": kind, **overrides}
    return services.device_register(**values)


def insert_device(**overrides) -> None:
    """A device row written with plain SQL, so only the database's own constraints apply."""
    farm = overrides.pop("farm", None) or FarmFactory.create()
    row = {
        "uid": "raw-1",
        "name": "Raw",
        "farm_id": farm.pk,
        "field_id": None,
        "kind_id": DeviceKindFactory.create().pk,
        "enabled": True,
        "expected_interval": None,
        "status": "unknown",
        "created_at": timezone.now(),
        "updated_at": timezone.now(),
        **overrides,
    }
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO sensors_device ({columns}) VALUES ({marks})", list(row.values()))


def raw(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# --- uid rules -------------------------------------------------------------------


@pytest.mark.parametrize("uid", ["probe-1", "North_Field_7", "a", "x" * 64, "A84041000181C5B0", "0-_-9"])
def test_it_accepts_uids_of_letters_digits_dashes_and_underscores(uid):
    validate_uid(uid)


@pytest.mark.parametrize(
    ("uid", "explained"),
    [
        ("field/probe", "'/' (the MQTT topic separator)"),
        ("probe+1", "'+' (an MQTT wildcard)"),
        ("probe#1", "'#' (an MQTT wildcard)"),
        ("north probe", "a space"),
        ("probe\t1", "whitespace '\\t'"),
        ("sonde-é", "'é' (not ASCII)"),
        ("probe.1", "'.'"),
    ],
)
def test_it_refuses_a_uid_with_a_forbidden_character_and_names_it(uid, explained):
    with pytest.raises(ValidationError) as caught:
        validate_uid(uid)
    assert explained in caught.value.messages[0]
    assert "farm/<uid>/telemetry" in caught.value.messages[0]


def test_it_refuses_an_empty_uid():
    with pytest.raises(ValidationError, match="cannot be empty"):
        validate_uid("")


def test_it_refuses_a_uid_longer_than_64_characters():
    with pytest.raises(ValidationError, match="at most 64 characters"):
        validate_uid("x" * 65)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("A84041000181C5B0", "a84041000181c5b0"),
        ("  a84041000181C5B0 ", "a84041000181c5b0"),
        ("Probe-A1", "Probe-A1"),
        ("ABCDEF", "ABCDEF"),
        ("A84041000181C5B0FF", "A84041000181C5B0FF"),
    ],
)
def test_it_lowercases_deveuis_and_keeps_other_uids_as_given(given, stored):
    assert normalize_uid(given) == stored


def test_registration_stores_a_deveui_lower_case():
    device = register(uid="A84041000181C5B0")
    device.refresh_from_db()
    assert device.uid == "a84041000181c5b0"


def test_it_refuses_a_second_device_with_the_same_deveui_in_another_case():
    register(uid="a84041000181c5b0")
    with pytest.raises(ValidationError) as caught:
        register(uid="A84041000181C5B0")
    assert "uid" in caught.value.message_dict
    assert Device.objects.count() == 1


def test_it_refuses_a_duplicate_uid():
    register(uid="probe-1")
    with pytest.raises(ValidationError, match="already exists"):
        register(uid="probe-1", farm=FarmFactory.create())


def test_registration_refuses_a_forbidden_uid_and_writes_nothing():
    with pytest.raises(ValidationError) as caught:
        register(uid="field/probe")
    assert "MQTT topic separator" in caught.value.message_dict["uid"][0]
    assert not Device.objects.exists()
    assert not Sensor.objects.exists()


# --- database constraints, checked with plain SQL ----------------------------------------


@pytest.mark.parametrize("uid", ["a/b", "a+b", "a#b", "a b", "sonde-é", "probe\n", ""])
def test_the_database_refuses_a_forbidden_uid(uid):
    with pytest.raises(IntegrityError, match="device_uid_charset"), transaction.atomic():
        insert_device(uid=uid)


def test_the_database_refuses_a_uid_longer_than_64_characters():
    with pytest.raises(DataError), transaction.atomic():
        insert_device(uid="x" * 65)


def test_the_database_refuses_an_upper_case_deveui():
    with pytest.raises(IntegrityError, match="device_deveui_lowercase"), transaction.atomic():
        insert_device(uid="A84041000181C5B0")


def test_the_database_accepts_a_lower_case_deveui():
    insert_device(uid="a84041000181c5b0")
    assert Device.objects.filter(uid="a84041000181c5b0").exists()


def test_the_database_refuses_a_duplicate_uid():
    insert_device(uid="same")
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_device(uid="same")


def test_the_database_refuses_an_unknown_status():
    with pytest.raises(IntegrityError, match="device_status_valid"), transaction.atomic():
        insert_device(status="sleepy")


def test_the_database_refuses_a_zero_expected_interval():
    with pytest.raises(IntegrityError, match="device_interval_positive"), transaction.atomic():
        insert_device(expected_interval=0)


def test_the_database_refuses_a_field_of_another_farm():
    farm, other = FarmFactory.create(), FarmFactory.create()
    with pytest.raises(IntegrityError, match="sensors_device_field_in_farm_fk"), transaction.atomic():
        insert_device(farm=farm, field_id=FieldFactory.create(farm=other).pk)


def test_the_database_accepts_a_field_of_the_same_farm_and_no_field():
    farm = FarmFactory.create()
    insert_device(uid="in-field", farm=farm, field_id=FieldFactory.create(farm=farm).pk)
    insert_device(uid="no-field", farm=farm, field_id=None)
    assert Device.objects.filter(farm=farm).count() == 2


@pytest.mark.parametrize("key", ["Soil", "1st", "soil-moisture", "soil moisture", ""])
def test_the_database_refuses_a_malformed_metric_key(key):
    kind = DeviceKindFactory.create()
    with pytest.raises(IntegrityError, match="metricspec_key_format"), transaction.atomic():
        raw("INSERT INTO sensors_metricspec (kind_id, key, label, unit) VALUES (%s, %s, 'x', '')", [kind.pk, key])
    device = DeviceFactory.create()
    with pytest.raises(IntegrityError, match="sensor_key_format"), transaction.atomic():
        raw(
            "INSERT INTO sensors_sensor (device_id, key, label, unit, needs_review, created_at) "
            "VALUES (%s, %s, 'x', '', false, now())",
            [device.pk, key],
        )


def test_the_database_refuses_a_sensor_whose_min_exceeds_its_max():
    with pytest.raises(IntegrityError, match="sensor_min_le_max"), transaction.atomic():
        SensorFactory.create(min_value=10, max_value=5)


def test_the_database_refuses_a_metric_whose_min_exceeds_its_max():
    with pytest.raises(IntegrityError, match="metricspec_min_le_max"), transaction.atomic():
        MetricSpecFactory.create(min_value=10, max_value=5)


def test_the_database_refuses_two_fields_with_one_name_on_a_farm():
    farm = FarmFactory.create()
    FieldFactory.create(farm=farm, name="North")
    with pytest.raises(IntegrityError), transaction.atomic():
        FieldFactory.create(farm=farm, name="North")


# --- field in farm -------------------------------------------------------------------


def test_validation_refuses_a_field_of_another_farm_beside_the_field():
    farm, other = FarmFactory.create(name="Home Farm"), FarmFactory.create(name="Hill Farm")
    plot = FieldFactory.create(farm=other, name="Top Field")
    with pytest.raises(ValidationError) as caught:
        register(farm=farm, field=plot)
    assert caught.value.message_dict["field"] == ["Top Field is on farm Hill Farm, not on this device's farm."]


def test_moving_a_field_to_another_farm_carries_its_devices_along():
    device = DeviceFactory.create()
    other = FarmFactory.create()
    Field.objects.filter(pk=device.field_id).update(farm=other)
    device.refresh_from_db()
    assert device.farm_id == other.pk


def test_deleting_a_field_keeps_its_devices_on_the_farm():
    device = DeviceFactory.create()
    device.field.delete()
    device.refresh_from_db()
    assert device.field_id is None


def test_deleting_a_farm_deletes_its_fields_devices_and_sensors():
    device = register(field=None)
    farm = device.farm
    FieldFactory.create(farm=farm)
    farm.delete()
    assert not Device.objects.exists()
    assert not Sensor.objects.exists()
    assert not Field.objects.filter(farm_id=farm.pk).exists()


def test_a_farm_refuses_an_unknown_time_zone():
    farm = Farm(name="Home", slug="home", time_zone="Mars/Olympus")
    with pytest.raises(ValidationError) as caught:
        farm.full_clean()
    assert "time_zone" in caught.value.message_dict


# --- shipped kinds -----------------------------------------------------------------


@pytest.mark.parametrize(("slug", "keys"), SHIPPED.items())
def test_it_ships_a_kind_with_its_metrics(slug, keys):
    kind = DeviceKind.objects.get(slug=slug)
    assert [metric.key for metric in kind.metrics.all()] == keys
    assert kind.expected_interval > 0


def test_every_shipped_metric_has_a_label_unit_and_plausible_range():
    metrics = MetricSpec.objects.filter(kind__slug__in=SHIPPED)
    assert metrics.count() == sum(len(keys) for keys in SHIPPED.values())
    for metric in metrics:
        metric.full_clean()
        assert metric.label
        assert metric.unit
        assert metric.min_value is not None
        assert metric.max_value is not None
        assert metric.min_value < metric.max_value


def test_a_device_reports_at_its_own_interval_or_its_kinds():
    kind = DeviceKind.objects.get(slug="air-th")
    assert register(kind=kind).interval_seconds == kind.expected_interval
    assert register(uid="probe-2", kind=kind, expected_interval=60).interval_seconds == 60


# --- registration services ---------------------------------------------------------------


def test_registration_creates_one_sensor_per_metric_of_the_kind(probe_kind):
    farm = FarmFactory.create()
    plot = FieldFactory.create(farm=farm)
    device = register(uid="probe-9", name="Probe 9", farm=farm, field=plot, kind=probe_kind)
    sensors = list(device.sensors.order_by("key").values_list("key", "label", "unit", "min_value", "max_value"))
    assert sensors == [
        ("soil_moisture", "Soil moisture", "%", 0.0, 100.0),
        ("soil_temperature", "Soil temperature", "°C", -30.0, 70.0),
    ]
    assert not device.sensors.filter(needs_review=True).exists()


def test_registration_of_a_weather_station_creates_seven_sensors():
    device = register(kind=DeviceKind.objects.get(slug="weather-station"))
    assert device.sensors.count() == 7


def test_registration_refuses_an_interval_of_zero():
    with pytest.raises(ValidationError) as caught:
        register(expected_interval=0)
    assert "expected_interval" in caught.value.message_dict


def test_changing_kind_adds_the_new_kinds_sensors_and_clears_their_review_flag(probe_kind):
    device = register(kind=DeviceKind.objects.get(slug="air-th"))
    SensorFactory.create(device=device, key="soil_moisture", needs_review=True)
    device.kind = probe_kind
    device.save()
    created = services.device_sensors_sync(device=device)
    assert created == 1
    assert set(device.sensors.values_list("key", flat=True)) == {
        "air_temperature",
        "air_humidity",
        "soil_moisture",
        "soil_temperature",
    }
    assert not device.sensors.filter(needs_review=True).exists()


def test_adding_a_metric_to_a_kind_can_add_the_sensor_to_every_device_of_the_kind(probe_kind):
    first, second = register(uid="p-1", kind=probe_kind), register(uid="p-2", kind=probe_kind)
    MetricSpecFactory.create(kind=probe_kind, key="soil_ec", label="Soil EC", unit="dS/m", min_value=0, max_value=20)
    assert services.kind_sensors_sync(kind=probe_kind) == 2
    assert first.sensors.filter(key="soil_ec").exists()
    assert second.sensors.filter(key="soil_ec").exists()
    assert services.kind_sensors_sync(kind=probe_kind) == 0


def test_devices_set_enabled_changes_only_the_devices_that_differ():
    on, off = DeviceFactory.create(enabled=True), DeviceFactory.create(enabled=False)
    before = timezone.now() - timedelta(seconds=1)
    assert services.devices_set_enabled(devices=Device.objects.all(), enabled=False) == 1
    on.refresh_from_db()
    off.refresh_from_db()
    assert (on.enabled, off.enabled) == (False, False)
    assert on.updated_at > before
    assert services.devices_set_enabled(devices=[on, off], enabled=True) == 2


def test_unknown_devices_become_devices_and_leave_the_unknown_list():
    farm = FarmFactory.create()
    plot = FieldFactory.create(farm=farm)
    kind = DeviceKind.objects.get(slug="air-th")
    UnknownDeviceFactory.create(uid="stranger-a")
    UnknownDeviceFactory.create(uid="A84041000181C5B0", source="chirpstack")
    devices = services.unknown_devices_register(unknown=UnknownDevice.objects.all(), farm=farm, field=plot, kind=kind)
    assert sorted(d.uid for d in devices) == ["a84041000181c5b0", "stranger-a"]
    assert all(d.farm == farm and d.field == plot and d.kind == kind and d.sensors.count() == 2 for d in devices)
    assert not UnknownDevice.objects.exists()


def test_unknown_device_registration_is_all_or_nothing_and_names_each_bad_uid():
    farm = FarmFactory.create()
    kind = DeviceKind.objects.get(slug="rain-gauge")
    DeviceFactory.create(uid="taken")
    UnknownDeviceFactory.create(uid="fine-1")
    UnknownDeviceFactory.create(uid="taken")
    UnknownDeviceFactory.create(uid="bad uid")
    with pytest.raises(ValidationError) as caught:
        services.unknown_devices_register(unknown=UnknownDevice.objects.all(), farm=farm, field=None, kind=kind)
    messages = caught.value.messages
    assert len(messages) == 2
    assert any(m.startswith("bad uid: ") and "a space" in m for m in messages)
    assert any(m.startswith("taken: ") and "already exists" in m for m in messages)
    assert not Device.objects.filter(uid="fine-1").exists()
    assert UnknownDevice.objects.count() == 3


def test_unknown_device_registration_refuses_a_field_of_another_farm():
    UnknownDeviceFactory.create(uid="stranger-b")
    with pytest.raises(ValidationError, match="is on farm"):
        services.unknown_devices_register(
            unknown=UnknownDevice.objects.all(),
            farm=FarmFactory.create(),
            field=FieldFactory.create(),
            kind=DeviceKind.objects.get(slug="rain-gauge"),
        )
    assert UnknownDevice.objects.count() == 1
