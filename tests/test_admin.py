"""Device registration and the ingest leftovers (unknown devices, dead letters) in the Django admin."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from farm.models import Farm, Membership
from sensors.display import broker_from_url, payload_text_preview, sample_payload
from sensors.models import Device, DeviceKind, DeviceStatus, Reading, Sensor, UnknownDevice
from tests.factories import (
    DeadLetterFactory,
    DeviceFactory,
    FarmFactory,
    FieldFactory,
    SensorFactory,
    UnknownDeviceFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def soil_probe() -> DeviceKind:
    return DeviceKind.objects.get(slug="soil-probe")


def html_text(response) -> str:
    return response.content.decode()


def error_beside(response, field: str) -> str:
    """The error list rendered inside the form row of one field ('' when there is none)."""
    match = re.search(
        rf'<div class="form-row[^"]*errors[^"]*field-{field}[^"]*">(.*?)</div>\s*(?=<div class="form-row|</fieldset>)',
        html_text(response),
        re.S,
    )
    return match.group(1) if match else ""


def action(client: Client, url: str, name: str, objects, follow: bool = False, **extra):
    data = {"action": name, "_selected_action": [str(obj.pk) for obj in objects], **extra}
    return client.post(url, data, follow=follow)


# --- site -----------------------------------------------------------------------------------


def test_the_admin_is_titled_for_furrow(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert (response.context["site_header"], response.context["site_title"]) == (
        "Furrow administration",
        "Furrow admin",
    )
    assert "Farms, devices and data" in html_text(response)


@pytest.mark.parametrize(
    "model",
    [
        "farm_farm",
        "farm_field",
        "farm_membership",
        "sensors_devicekind",
        "sensors_device",
        "sensors_sensor",
        "sensors_unknowndevice",
        "sensors_deadletter",
    ],
)
def test_every_list_page_renders(admin_client, model):
    DeviceFactory.create()
    UnknownDeviceFactory.create()
    DeadLetterFactory.create()
    assert admin_client.get(reverse(f"admin:{model}_changelist")).status_code == 200


def test_the_admin_is_closed_to_non_staff_users(logged_in_client):
    response = logged_in_client.get(reverse("admin:sensors_device_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


# --- farms ----------------------------------------------------------------------------------


def test_a_farm_is_created_with_its_fields_and_members_inline(admin_client):
    member = UserFactory.create(username="grower")
    response = admin_client.post(
        reverse("admin:farm_farm_add"),
        {
            "name": "Home Farm",
            "slug": "home-farm",
            "time_zone": "Europe/London",
            "location": "Somerset",
            "fields-TOTAL_FORMS": "1",
            "fields-INITIAL_FORMS": "0",
            "fields-0-name": "North Paddock",
            "fields-0-slug": "north-paddock",
            "fields-0-crop": "Barley",
            "fields-0-gdd_base_c": "5.0",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-user": str(member.pk),
            "memberships-0-role": "manager",
        },
    )
    assert response.status_code == 302, html_text(response)
    farm = Farm.objects.get(slug="home-farm")
    assert list(farm.fields.values_list("name", "crop")) == [("North Paddock", "Barley")]
    assert Membership.objects.get(farm=farm).user == member


def test_the_farm_list_counts_fields_and_devices(admin_client):
    device = DeviceFactory.create(farm=FarmFactory.create(name="Counted Farm"))
    FieldFactory.create(farm=device.farm)
    response = admin_client.get(reverse("admin:farm_farm_changelist"))
    row = re.search(r"Counted Farm.*?</tr>", html_text(response), re.S)
    assert row
    assert re.findall(r'<td class="field-(field_count|device_count)">(\d+)</td>', row.group(0)) == [
        ("field_count", "2"),
        ("device_count", "1"),
    ]


# --- devices: registration ---------------------------------------------------------------------


def device_form(farm, kind, **overrides) -> dict[str, str]:
    data = {
        "uid": "A84041000181C5B0",
        "name": "North probe",
        "kind": str(kind.pk),
        "farm": str(farm.pk),
        "field": "",
        "enabled": "on",
        "expected_interval": "",
    }
    return {**data, **overrides}


def test_adding_a_device_creates_its_sensors_from_the_kind(admin_client, soil_probe):
    farm = FarmFactory.create()
    plot = FieldFactory.create(farm=farm)
    response = admin_client.post(reverse("admin:sensors_device_add"), device_form(farm, soil_probe, field=str(plot.pk)))
    assert response.status_code == 302, html_text(response)
    device = Device.objects.get()
    assert device.uid == "a84041000181c5b0"
    assert (device.farm, device.field, device.kind) == (farm, plot, soil_probe)
    assert sorted(device.sensors.values_list("key", flat=True)) == ["soil_ec", "soil_moisture", "soil_temperature"]


def test_saving_a_new_device_lands_on_its_page(admin_client, soil_probe):
    farm = FarmFactory.create()
    response = admin_client.post(reverse("admin:sensors_device_add"), device_form(farm, soil_probe))
    device = Device.objects.get()
    assert response["Location"] == reverse("admin:sensors_device_change", args=[device.pk])
    another = admin_client.post(
        reverse("admin:sensors_device_add"), device_form(farm, soil_probe, uid="probe-2", _addanother="1")
    )
    assert another["Location"] == reverse("admin:sensors_device_add")


def test_the_uid_help_text_shows_the_topic_placeholder(admin_client):
    html = admin_client.get(reverse("admin:sensors_device_add")).content.decode()
    assert "farm/&lt;uid&gt;/" in html
    assert "farm//" not in html


def test_the_add_page_has_no_sensor_rows_to_fill_in(admin_client):
    response = admin_client.get(reverse("admin:sensors_device_add"))
    assert response.status_code == 200
    assert "sensors-TOTAL_FORMS" not in html_text(response)
    assert 'name="uid"' in html_text(response)


@pytest.mark.parametrize(
    ("uid", "explained"),
    [("north/probe", "the MQTT topic separator"), ("probe+1", "an MQTT wildcard"), ("north probe", "a space")],
)
def test_a_forbidden_uid_is_refused_beside_the_uid_field(admin_client, soil_probe, uid, explained):
    response = admin_client.post(
        reverse("admin:sensors_device_add"), device_form(FarmFactory.create(), soil_probe, uid=uid)
    )
    assert response.status_code == 200
    assert explained in error_beside(response, "uid")
    assert not Device.objects.exists()


def test_a_field_of_another_farm_is_refused_beside_the_field(admin_client, soil_probe):
    farm = FarmFactory.create()
    elsewhere = FieldFactory.create(name="Far Field")
    data = device_form(farm, soil_probe, field=str(elsewhere.pk))
    response = admin_client.post(reverse("admin:sensors_device_add"), data)
    assert response.status_code == 200
    assert "Far Field is on farm" in error_beside(response, "field")
    assert not Device.objects.exists()


def test_a_uid_already_registered_in_another_case_is_refused(admin_client, soil_probe):
    DeviceFactory.create(uid="a84041000181c5b0")
    response = admin_client.post(reverse("admin:sensors_device_add"), device_form(FarmFactory.create(), soil_probe))
    assert response.status_code == 200
    assert "already exists" in error_beside(response, "uid")
    assert Device.objects.count() == 1


def sensor_rows(device: Device) -> dict[str, str]:
    sensors = list(device.sensors.all())
    data = {
        "sensors-TOTAL_FORMS": str(len(sensors)),
        "sensors-INITIAL_FORMS": str(len(sensors)),
        "sensors-MIN_NUM_FORMS": "0",
        "sensors-MAX_NUM_FORMS": "1000",
    }
    for i, sensor in enumerate(sensors):
        data |= {
            f"sensors-{i}-id": str(sensor.pk),
            f"sensors-{i}-device": str(device.pk),
            f"sensors-{i}-label": sensor.label,
            f"sensors-{i}-unit": sensor.unit,
            f"sensors-{i}-min_value": "" if sensor.min_value is None else str(sensor.min_value),
            f"sensors-{i}-max_value": "" if sensor.max_value is None else str(sensor.max_value),
        }
    return data


def test_changing_a_devices_kind_adds_the_new_kinds_sensors(admin_client, soil_probe):
    device = DeviceFactory.create(kind=DeviceKind.objects.get(slug="air-th"))
    SensorFactory.create(device=device, key="air_temperature", label="Air temperature", unit="°C", min_value=-40)
    data = device_form(device.farm, soil_probe, uid=device.uid, name=device.name, field=str(device.field_id))
    response = admin_client.post(reverse("admin:sensors_device_change", args=[device.pk]), data | sensor_rows(device))
    assert response.status_code == 302, html_text(response)
    assert set(device.sensors.values_list("key", flat=True)) == {
        "air_temperature",
        "soil_moisture",
        "soil_temperature",
        "soil_ec",
    }


def test_editing_a_sensor_label_inline_keeps_the_device(admin_client):
    device = DeviceFactory.create()
    sensor = SensorFactory.create(device=device, label="Old label")
    data = device_form(device.farm, device.kind, uid=device.uid, name=device.name, field=str(device.field_id))
    rows = sensor_rows(device) | {"sensors-0-label": "Moisture at 30 cm"}
    response = admin_client.post(reverse("admin:sensors_device_change", args=[device.pk]), data | rows)
    assert response.status_code == 302, html_text(response)
    sensor.refresh_from_db()
    assert sensor.label == "Moisture at 30 cm"


# --- devices: list, actions ----------------------------------------------------------------------


def test_the_device_list_shows_status_as_a_coloured_badge_and_last_seen(admin_client):
    DeviceFactory.create(name="Seen probe", status=DeviceStatus.ONLINE, last_seen=timezone.now() - timedelta(minutes=5))
    DeviceFactory.create(name="Silent probe")
    page = html_text(admin_client.get(reverse("admin:sensors_device_changelist")))
    assert '<span class="furrow-status furrow-status-online">Online</span>' in page
    assert "Never seen" in page
    assert "5\xa0minutes ago" in page
    assert "never" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=north-1", {"North probe"}),
        ("q=Gauge", {"Rain gauge"}),
        ("status__exact=online", {"Rain gauge"}),
        ("enabled__exact=0", {"Off probe"}),
    ],
)
def test_the_device_list_searches_and_filters(admin_client, query, expected):
    DeviceFactory.create(uid="north-1", name="North probe")
    DeviceFactory.create(uid="rg-1", name="Rain gauge", status=DeviceStatus.ONLINE)
    DeviceFactory.create(uid="off-1", name="Off probe", enabled=False)
    response = admin_client.get(reverse("admin:sensors_device_changelist") + "?" + query)
    assert {d.name for d in response.context["cl"].result_list} == expected


def test_the_device_list_filters_by_farm_field_and_kind(admin_client):
    wanted = DeviceFactory.create(name="Wanted")
    DeviceFactory.create(name="Other")
    for query in (f"farm__id__exact={wanted.farm_id}", f"field__id__exact={wanted.field_id}"):
        response = admin_client.get(reverse("admin:sensors_device_changelist") + "?" + query)
        assert [d.name for d in response.context["cl"].result_list] == ["Wanted"]
    response = admin_client.get(reverse("admin:sensors_device_changelist") + f"?kind__id__exact={wanted.kind_id}")
    assert [d.name for d in response.context["cl"].result_list] == ["Wanted"]


def test_the_device_list_does_not_query_per_row(admin_client, django_assert_max_num_queries):
    for _ in range(30):
        DeviceFactory.create()
    with django_assert_max_num_queries(15):
        response = admin_client.get(reverse("admin:sensors_device_changelist"))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 30


def test_bulk_disable_and_enable_actions(admin_client):
    chosen = [DeviceFactory.create(), DeviceFactory.create()]
    untouched = DeviceFactory.create()
    url = reverse("admin:sensors_device_changelist")
    response = action(admin_client, url, "disable_devices", chosen)
    assert response.status_code == 302
    assert list(Device.objects.filter(enabled=False).order_by("pk")) == chosen
    untouched.refresh_from_db()
    assert untouched.enabled
    response = action(admin_client, url, "enable_devices", chosen[:1], follow=True)
    assert list(Device.objects.filter(enabled=False)) == chosen[1:]
    assert [str(m) for m in response.context["messages"]] == ["Disabled 2 device(s).", "Enabled 1 device(s)."]


# --- devices: MQTT help on the change page ----------------------------------------------------------


def test_the_device_page_shows_its_topic_and_a_ready_mosquitto_pub(admin_client, soil_probe, settings):
    settings.MQTT_URL = "mqtt://broker.farm.example:1884"
    device = DeviceFactory.create(uid="north-probe-1", kind=soil_probe)
    page = html_text(admin_client.get(reverse("admin:sensors_device_change", args=[device.pk])))
    assert "farm/north-probe-1/telemetry" in page
    assert "farm/north-probe-1/status" in page
    command = re.search(r'<pre class="furrow-mosquitto-pub"[^>]*>(.*?)</pre>', page, re.S)
    assert command
    assert command.group(1) == (
        "mosquitto_pub -h broker.farm.example -p 1884 -q 1 -t farm/north-probe-1/telemetry -m "
        "&#x27;{&quot;soil_moisture&quot;: 31.2, &quot;soil_temperature&quot;: 14.8, &quot;soil_ec&quot;: 0.42}&#x27;"
    )


def test_the_device_page_shows_lorawan_uplink_topics_for_a_deveui(admin_client):
    device = DeviceFactory.create(uid="a84041000181c5b0")
    page = html_text(admin_client.get(reverse("admin:sensors_device_change", args=[device.pk])))
    assert "application/&lt;application-id&gt;/device/a84041000181c5b0/event/up" in page
    assert "v3/&lt;application-id&gt;@&lt;tenant&gt;/devices/&lt;device-id&gt;/up" in page
    assert "A84041000181C5B0" in page


def test_the_device_page_never_shows_the_broker_password(admin_client, settings):
    settings.MQTT_URL = "mqtts://ingest:s3cret-pw@mqtt.example.com"
    device = DeviceFactory.create()
    page = html_text(admin_client.get(reverse("admin:sensors_device_change", args=[device.pk])))
    assert "s3cret-pw" not in page
    assert "-h mqtt.example.com -p 8883 -q 1 --capath /etc/ssl/certs -u ingest -P &quot;$MQTT_PASSWORD&quot;" in page


def test_the_device_page_lists_its_sensors_with_last_values(admin_client):
    device = DeviceFactory.create()
    sensor = SensorFactory.create(device=device, key="soil_moisture", needs_review=True)
    Reading.objects.bulk_create([Reading(sensor=sensor, ts=timezone.now(), value=27.5)])
    page = html_text(admin_client.get(reverse("admin:sensors_device_change", args=[device.pk])))
    assert "soil_moisture" in page
    assert "27.5" in page
    assert re.search(r'<input type="checkbox" name="sensors-0-needs_review"[^>]* checked>', page)


# --- sensors --------------------------------------------------------------------------------------


def test_the_sensor_list_filters_sensors_needing_review(admin_client):
    SensorFactory.create(key="soil_moisture")
    flagged = SensorFactory.create(key="leaf_wetness", needs_review=True)
    response = admin_client.get(reverse("admin:sensors_sensor_changelist") + "?needs_review__exact=1")
    assert list(response.context["cl"].result_list) == [flagged]


def test_mark_reviewed_action_clears_the_flag(admin_client):
    flagged = SensorFactory.create(needs_review=True)
    action(admin_client, reverse("admin:sensors_sensor_changelist"), "mark_reviewed", [flagged])
    flagged.refresh_from_db()
    assert not flagged.needs_review


def test_the_sensor_list_sorts_by_last_reading_time_and_shows_the_newest_value(admin_client):
    now = timezone.now().replace(microsecond=0)
    hour_ago, minute_ago, half_hour_ago = SensorFactory.create_batch(3)
    Reading.objects.bulk_create(
        [
            Reading(sensor=hour_ago, ts=now - timedelta(hours=1), value=1.5),
            Reading(sensor=minute_ago, ts=now - timedelta(hours=3), value=99.0),
            Reading(sensor=minute_ago, ts=now - timedelta(minutes=1), value=2.5),
            Reading(sensor=half_hour_ago, ts=now - timedelta(minutes=30), value=3.5),
        ]
    )
    # Column 6 of list_display is "last reading at"; "-" sorts newest first.
    response = admin_client.get(reverse("admin:sensors_sensor_changelist") + "?o=-6")
    assert list(response.context["cl"].result_list) == [minute_ago, half_hour_ago, hour_ago]
    assert '<td class="field-last_value">2.5</td>' in html_text(response)


def test_the_sensor_page_shows_its_latest_readings_newest_first(admin_client):
    sensor = SensorFactory.create()
    start = timezone.now().replace(microsecond=0) - timedelta(hours=2)
    Reading.objects.bulk_create(
        [Reading(sensor=sensor, ts=start + timedelta(minutes=i), value=float(i)) for i in range(60)]
    )
    page = html_text(admin_client.get(reverse("admin:sensors_sensor_change", args=[sensor.pk])))
    table = re.search(r'<table class="furrow-readings">(.*?)</table>', page, re.S)
    assert table
    values = re.findall(r"<td>([\d.]+)</td></tr>", table.group(1))
    assert values[:3] == ["59.0", "58.0", "57.0"]
    assert len(values) == 50


def test_sensors_cannot_be_added_by_hand(admin_client):
    assert admin_client.get(reverse("admin:sensors_sensor_add")).status_code == 403


# --- unknown devices ----------------------------------------------------------------------------------


def test_the_unknown_device_list_shows_counts_and_last_payload(admin_client):
    UnknownDeviceFactory.create(uid="stray-7", message_count=42, last_payload='{"rain": 0.4}', source="native")
    page = html_text(admin_client.get(reverse("admin:sensors_unknowndevice_changelist")))
    assert "stray-7" in page
    assert '<td class="field-message_count">42</td>' in page
    assert "{&quot;rain&quot;: 0.4}" in page


def test_the_register_action_asks_for_farm_field_and_kind(admin_client):
    strays = [UnknownDeviceFactory.create(uid="stray-1"), UnknownDeviceFactory.create(uid="stray-2")]
    response = action(admin_client, reverse("admin:sensors_unknowndevice_changelist"), "register_devices", strays)
    assert response.status_code == 200
    page = html_text(response)
    assert 'name="farm"' in page
    assert 'name="field"' in page
    assert 'name="kind"' in page
    assert "<code>stray-1</code>" in page
    assert "Register 2 devices" in page
    assert not Device.objects.exists()


def test_the_register_action_registers_the_chosen_devices(admin_client):
    farm = FarmFactory.create()
    plot = FieldFactory.create(farm=farm)
    kind = DeviceKind.objects.get(slug="rain-gauge")
    strays = [UnknownDeviceFactory.create(uid="stray-1"), UnknownDeviceFactory.create(uid="A84041000181C5B0")]
    other = UnknownDeviceFactory.create(uid="not-chosen")
    url = reverse("admin:sensors_unknowndevice_changelist")
    response = action(
        admin_client, url, "register_devices", strays, farm=farm.pk, field=plot.pk, kind=kind.pk, apply="yes"
    )
    assert response.status_code == 302
    assert sorted(Device.objects.values_list("uid", "farm", "field", "kind")) == [
        ("a84041000181c5b0", farm.pk, plot.pk, kind.pk),
        ("stray-1", farm.pk, plot.pk, kind.pk),
    ]
    assert Sensor.objects.filter(key="rain").count() == 2
    assert list(UnknownDevice.objects.all()) == [other]


def test_the_register_action_shows_a_field_of_another_farm_beside_the_field(admin_client):
    stray = UnknownDeviceFactory.create(uid="stray-1")
    farm = FarmFactory.create(name="Home Farm")
    plot = FieldFactory.create(name="Hill Top", farm=FarmFactory.create(name="Hill Farm"))
    response = action(
        admin_client,
        reverse("admin:sensors_unknowndevice_changelist"),
        "register_devices",
        [stray],
        farm=farm.pk,
        field=plot.pk,
        kind=DeviceKind.objects.get(slug="air-th").pk,
        apply="yes",
    )
    assert response.status_code == 200
    assert "Hill Top is on Hill Farm, not on Home Farm." in error_beside(response, "field")
    assert not Device.objects.exists()
    assert UnknownDevice.objects.count() == 1


def test_the_register_action_shows_an_invalid_choice_beside_the_field(admin_client):
    stray = UnknownDeviceFactory.create(uid="stray-1")
    response = action(
        admin_client,
        reverse("admin:sensors_unknowndevice_changelist"),
        "register_devices",
        [stray],
        farm="999999",
        kind=DeviceKind.objects.get(slug="air-th").pk,
        apply="yes",
    )
    assert response.status_code == 200
    assert "Select a valid choice" in error_beside(response, "farm")
    assert error_beside(response, "kind") == ""
    assert not Device.objects.exists()


def test_the_register_action_explains_a_uid_that_cannot_be_registered(admin_client):
    strays = [UnknownDeviceFactory.create(uid="fine-1"), UnknownDeviceFactory.create(uid="has space")]
    response = action(
        admin_client,
        reverse("admin:sensors_unknowndevice_changelist"),
        "register_devices",
        strays,
        farm=FarmFactory.create().pk,
        kind=DeviceKind.objects.get(slug="air-th").pk,
        apply="yes",
    )
    assert response.status_code == 200
    page = html_text(response)
    assert "Nothing was registered" in page
    assert re.search(r'<ul class="errorlist nonfield"><li>has space: [^<]*a space', page)
    assert not Device.objects.exists()


def test_the_register_action_needs_permission_to_add_devices(client):
    viewer = UserFactory.create(is_staff=True)
    viewer.user_permissions.add(*_perms("view_unknowndevice"))
    client.force_login(viewer)
    stray = UnknownDeviceFactory.create()
    url = reverse("admin:sensors_unknowndevice_changelist")
    response = action(client, url, "register_devices", [stray], farm=FarmFactory.create().pk, kind=1, apply="yes")
    assert 'name="kind"' not in html_text(response)
    assert not Device.objects.exists()
    assert UnknownDevice.objects.count() == 1
    assert 'value="register_devices"' not in html_text(client.get(url))


def _perms(*codenames: str):
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(codename__in=codenames)


# --- dead letters ------------------------------------------------------------------------------------


def test_a_dead_letter_payload_is_shown_escaped_and_as_hex(admin_client):
    letter = DeadLetterFactory.create(payload=b"<script>alert(1)</script>\x00\xff", payload_size=40, reason="not JSON")
    page = html_text(admin_client.get(reverse("admin:sensors_deadletter_change", args=[letter.pk])))
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x00\\xff" in page
    assert "00000000  3c 73 63 72 69 70 74 3e" in page
    assert "Stored the first 27 of 40 bytes." in page


def test_the_dead_letter_list_shows_deliveries_and_last_received(admin_client):
    first = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    DeadLetterFactory.create(received_at=first, last_received_at=first + timedelta(hours=3), count=7)
    page = html_text(admin_client.get(reverse("admin:sensors_deadletter_changelist")))
    assert '<td class="field-count">7</td>' in page
    assert "Deliveries" in page
    assert "Last received" in page
    assert '<td class="field-last_received_at nowrap">1 Jun 2025, 3 p.m.</td>' in page


def test_dead_letters_are_read_only(admin_client):
    letter = DeadLetterFactory.create()
    assert admin_client.get(reverse("admin:sensors_deadletter_add")).status_code == 403
    page = html_text(admin_client.get(reverse("admin:sensors_deadletter_change", args=[letter.pk])))
    assert 'name="_save"' not in page


@pytest.mark.parametrize(
    ("query", "expected"), [("source__exact=ttn", {"v3/app/devices/x/up"}), ("q=NaN", {"farm/nan/telemetry"})]
)
def test_dead_letters_filter_by_source_and_search_topic_and_reason(admin_client, query, expected):
    DeadLetterFactory.create(topic="v3/app/devices/x/up", source="ttn", reason="no dev_eui")
    DeadLetterFactory.create(topic="farm/nan/telemetry", source="native", reason="soil_moisture is NaN")
    response = admin_client.get(reverse("admin:sensors_deadletter_changelist") + "?" + query)
    assert {letter.topic for letter in response.context["cl"].result_list} == expected


# --- kinds ------------------------------------------------------------------------------------------


def test_the_kind_list_shows_metric_keys(admin_client):
    page = html_text(admin_client.get(reverse("admin:sensors_devicekind_changelist")))
    assert "soil_moisture, soil_temperature, soil_ec" in page


def test_the_kind_action_adds_missing_sensors_to_its_devices(admin_client, soil_probe):
    device = DeviceFactory.create(kind=soil_probe)
    action(admin_client, reverse("admin:sensors_devicekind_changelist"), "add_missing_sensors", [soil_probe])
    assert device.sensors.count() == 3


# --- what the pages display (pure helpers) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "websocket"),
    [
        ("mqtt://127.0.0.1:1883", "127.0.0.1", 1883, False, False),
        ("mqtts://broker.example.com", "broker.example.com", 8883, True, False),
        ("ws://broker.example.com:8080/mqtt", "broker.example.com", 1883, False, True),
        ("wss://broker.example.com/mqtt", "broker.example.com", 8883, True, True),
    ],
)
def test_the_broker_address_for_mosquitto_pub_comes_from_mqtt_url(url, host, port, tls, websocket):
    broker = broker_from_url(url)
    assert (broker.host, broker.port, broker.tls, broker.websocket) == (host, port, tls, websocket)


def test_a_metric_without_a_typical_value_gets_the_middle_of_its_range():
    kind = DeviceKind.objects.create(name="Leaf sensor", slug="leaf")
    kind.metrics.create(key="leaf_wetness", label="Leaf wetness", unit="%", min_value=0, max_value=15)
    kind.metrics.create(key="soil_moisture", label="Soil moisture", unit="%", min_value=0, max_value=100)
    assert sample_payload(kind.metrics.all()) == '{"leaf_wetness": 7.5, "soil_moisture": 31.2}'


def test_the_payload_preview_escapes_control_characters_and_bad_bytes():
    assert payload_text_preview(b'{"a":\x01 1}\n\xc3\x28') == '{"a":\\x01 1}\n\\xc3('
    assert payload_text_preview(b"x" * 10, limit=4) == "xxxx\n… (truncated)"
