"""Decoding one MQTT message: the payload contract and the bad-input rules (no database)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from sensors.ingest.decode import Limits, decode_message
from sensors.ingest.topics import subscription_filters

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
NOW_S = int(NOW.timestamp())
NOW_US = NOW_S * 1_000_000
LIMITS = Limits(max_payload=64 * 1024, max_future_us=300_000_000, retention_us=400 * 86_400_000_000)
DEV_EUI = "0004A30B001C0530"


def decode(topic: str | bytes, payload: object, *, retained: bool = False):
    raw_topic = topic.encode() if isinstance(topic, str) else topic
    if isinstance(payload, bytes):
        body = payload
    elif isinstance(payload, str):
        body = payload.encode()
    else:
        body = json.dumps(payload).encode()
    return decode_message(raw_topic, body, retained=retained, received_us=NOW_US, limits=LIMITS)


def readings(msg) -> dict[str, tuple[int, float]]:
    return {key: (ts, value) for ts, key, value in msg.readings}


def notes(msg) -> list[str]:
    return [skip.note for skip in msg.skipped]


# --- the formats ----------------------------------------------------------------------------


def test_it_reads_a_flat_object_with_ts_in_seconds():
    msg = decode("farm/probe-1/telemetry", {"ts": NOW_S - 60, "soil_moisture": 31.2, "air_temperature": 18})

    assert msg.reason is None
    assert (msg.source, msg.kind, msg.uid) == ("native", "telemetry", "probe-1")
    assert readings(msg) == {
        "soil_moisture": (NOW_US - 60_000_000, 31.2),
        "air_temperature": (NOW_US - 60_000_000, 18.0),
    }


def test_it_reads_the_values_form_with_ts_in_milliseconds():
    msg = decode("farm/probe-1/telemetry", {"ts": NOW_S * 1000 - 1500, "values": {"rain": 0.2}})

    assert readings(msg) == {"rain": (NOW_US - 1_500_000, 0.2)}


def test_it_uses_the_receive_time_when_there_is_no_ts():
    msg = decode("farm/probe-1/telemetry", {"soil_moisture": 30})

    assert readings(msg) == {"soil_moisture": (NOW_US, 30.0)}


def test_it_reads_an_array_backfill_with_one_time_per_element():
    msg = decode(
        "farm/probe-1/telemetry",
        [{"ts": NOW_S - 120, "soil_moisture": 30}, {"ts": NOW_S - 60, "values": {"soil_moisture": 31}}],
    )

    assert sorted(msg.readings) == [
        (NOW_US - 120_000_000, "soil_moisture", 30.0),
        (NOW_US - 60_000_000, "soil_moisture", 31.0),
    ]
    assert msg.skipped == []


@pytest.mark.parametrize(
    ("ts", "expected_us"),
    [
        ("2026-06-01T11:00:00+00:00", NOW_US - 3_600_000_000),
        ("2026-06-01T13:00:00+02:00", NOW_US - 3_600_000_000),
        ("2026-06-01T11:00:00Z", NOW_US - 3_600_000_000),
        ("2026-06-01T11:00:00.250Z", NOW_US - 3_600_000_000 + 250_000),
        ("2026-06-01T11:00:00", NOW_US - 3_600_000_000),  # no offset: UTC
        (str(NOW_S - 3600), NOW_US - 3_600_000_000),  # epoch seconds as a string
        (NOW_S - 3600.5, NOW_US - 3_600_500_000),
    ],
)
def test_it_reads_iso_8601_and_epoch_timestamps(ts, expected_us):
    msg = decode("farm/probe-1/telemetry", {"ts": ts, "soil_moisture": 1})

    assert msg.readings == [(expected_us, "soil_moisture", 1.0)]


def test_it_reads_a_status_as_plain_text_or_json():
    assert decode("farm/probe-1/status", "offline").status == "offline"
    assert decode("farm/probe-1/status", " Online\n").status == "online"
    assert decode("farm/probe-1/status", {"status": "offline"}).status == "offline"
    assert decode("farm/probe-1/status", '"online"').status == "online"


def test_it_lower_cases_a_deveui_in_a_native_topic():
    assert decode("farm/0004A30B001C0530/telemetry", {"x": 1}).uid == "0004a30b001c0530"


def chirpstack(**overrides):
    body = {
        "deduplicationId": "3d5a4a0e-6d59-4a4b-9a28-6b8e5c3f4e11",
        "time": "2026-06-01T11:59:00.123456789Z",
        "deviceInfo": {"tenantId": "t", "applicationId": "a", "deviceName": "probe", "devEui": DEV_EUI},
        "fCnt": 7,
        "fPort": 2,
        "object": {"soilMoisture": "31.5", "TempC_SHT": 18.25, "batteryLevel": 87, "status": "OK"},
        "rxInfo": [{"gatewayId": "gw1", "rssi": -101, "snr": -3.5}, {"gatewayId": "gw2", "rssi": -87, "snr": 6.25}],
    }
    body.update(overrides)
    return body


def test_it_reads_a_chirpstack_v4_uplink():
    msg = decode(f"application/app-1/device/{DEV_EUI.lower()}/event/up", chirpstack())

    assert msg.reason is None
    assert (msg.source, msg.uid) == ("chirpstack", DEV_EUI.lower())
    ts = int(datetime(2026, 6, 1, 11, 59, 0, 123456, tzinfo=UTC).timestamp()) * 1_000_000 + 123456
    assert readings(msg) == {"soil_moisture": (ts, 31.5), "temp_c_sht": (ts, 18.25), "battery_level": (ts, 87.0)}
    assert (msg.rssi, msg.snr) == (-87.0, 6.25)  # the best gateway
    assert notes(msg) == ["'status' (text 'OK')"]


def things_stack(**overrides):
    body = {
        "end_device_ids": {"device_id": "probe-7", "application_ids": {"application_id": "farm"}, "dev_eui": DEV_EUI},
        "received_at": "2026-06-01T11:58:00.5Z",
        "uplink_message": {
            "f_port": 1,
            "decoded_payload": {"temperature": 12.5, "soil": {"moisture": 40, "temperature": 11}},
            "rx_metadata": [{"gateway_ids": {"gateway_id": "gw"}, "rssi": -70, "channel_rssi": -70, "snr": 9}],
        },
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize("app", ["farm@ttn", "farm"], ids=["with-tenant", "open-source"])
def test_it_reads_a_things_stack_v3_uplink(app):
    msg = decode(f"v3/{app}/devices/probe-7/up", things_stack())

    assert msg.reason is None
    assert (msg.source, msg.uid) == ("ttn", DEV_EUI.lower())
    ts = NOW_US - 120_000_000 + 500_000
    assert readings(msg) == {"temperature": (ts, 12.5), "soil_moisture": (ts, 40.0), "soil_temperature": (ts, 11.0)}
    assert (msg.rssi, msg.snr) == (-70.0, 9.0)


def test_it_falls_back_to_the_things_stack_device_id_without_a_deveui():
    body = things_stack(end_device_ids={"device_id": "probe-7"})

    assert decode("v3/farm/devices/probe-7/up", body).uid == "probe-7"


def test_subscription_filters_follow_the_sources_and_the_share_group():
    assert subscription_filters(["native"]) == ["farm/+/telemetry", "farm/+/status"]
    assert subscription_filters(["chirpstack", "ttn"], "ingest") == [
        "$share/ingest/application/+/device/+/event/up",
        "$share/ingest/v3/+/devices/+/up",
    ]


# --- values --------------------------------------------------------------------------------------


def test_it_stores_booleans_as_one_and_zero_and_parses_numeric_strings():
    msg = decode("farm/p/telemetry", {"valve_open": True, "pump_on": False, "soil_moisture": " 21.5 "})

    assert readings(msg) == {"valve_open": (NOW_US, 1.0), "pump_on": (NOW_US, 0.0), "soil_moisture": (NOW_US, 21.5)}


def test_it_flattens_nested_objects_with_underscores():
    msg = decode("farm/p/telemetry", {"soil": {"moisture": 30, "temperature": {"at_10cm": 12}}})

    assert readings(msg) == {"soil_moisture": (NOW_US, 30.0), "soil_temperature_at_10cm": (NOW_US, 12.0)}


def test_it_skips_and_records_null_text_and_lists_but_keeps_the_numbers():
    msg = decode("farm/p/telemetry", {"soil_moisture": 30, "air_temperature": None, "note": "dry", "temps": [1, 2]})

    assert readings(msg) == {"soil_moisture": (NOW_US, 30.0)}
    assert notes(msg) == ["'air_temperature' (null)", "'note' (text 'dry')", "'temps' (an array)"]


def test_it_skips_objects_nested_more_than_three_levels():
    msg = decode("farm/p/telemetry", {"a": {"b": {"c": {"d": 1, "e": {"f": 2}}}}})

    assert readings(msg) == {"a_b_c_d": (NOW_US, 1.0)}
    assert notes(msg) == ["'e' (an object nested too deeply)"]


def test_it_normalises_codec_keys_but_not_native_ones():
    lora = decode(f"application/a/device/{DEV_EUI}/event/up", chirpstack(object={"batteryVoltage": 3.6, "Soil-EC": 1}))
    native = decode("farm/p/telemetry", {"batteryVoltage": 3.6, "ok": 1})

    assert set(readings(lora)) == {"battery_voltage", "soil_ec"}
    assert set(readings(native)) == {"ok"}
    assert "'batteryVoltage' (not a valid metric key" in notes(native)[0]


# --- the bad-input table: each case is rejected with a reason a person can act on --------------


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (b"farm/\xff\xfe/telemetry", b'{"x": 1}', "topic is not valid UTF-8"),
        ("farm/probe 1/telemetry", {"x": 1}, "device uid 'probe 1' in the topic is invalid"),
        ("farm/" + "a" * 65 + "/telemetry", {"x": 1}, "is invalid (length)"),
        ("farm/probe-1/other", {"x": 1}, "does not handle the topic"),
        ("farm/probe-1/telemetry", b'{"x": "\xff"}', "not valid UTF-8 (bad byte at offset 7)"),
        ("farm/probe-1/telemetry", "soil=31", "not JSON"),
        ("farm/probe-1/telemetry", '{"x": NaN}', "Skipped: 'x' (not a finite number: NaN)"),
        ("farm/probe-1/telemetry", '{"x": Infinity}', "Skipped: 'x' (not a finite number: Infinity)"),
        ("farm/probe-1/telemetry", '{"x": -Infinity}', "Skipped: 'x' (not a finite number: -Infinity)"),
        ("farm/probe-1/telemetry", '{"x": 1e999}', "'x' (not a finite number"),
        ("farm/probe-1/telemetry", '{"x": "1e999"}', "'x' (not a finite number"),
        ("farm/probe-1/telemetry", '{"x": 1e155}', "'x' (beyond the absolute bound of ±1e+12"),
        ("farm/probe-1/telemetry", '{"x": 1, "x": 2}', "key 'x' twice"),
        ("farm/probe-1/telemetry", "x" * (64 * 1024 + 1), "the limit is 65,536 (INGEST_MAX_PAYLOAD)"),
        ("farm/probe-1/telemetry", "[" * 60_000, "nested too deeply"),
        ("farm/probe-1/telemetry", "42", "must be a JSON object or an array of objects, got a number"),
        ("farm/probe-1/telemetry", "[]", "empty array"),
        ("farm/probe-1/telemetry", {}, "holds no readings"),
        ("farm/probe-1/telemetry", {"note": "hello"}, "holds no readings. Skipped: 'note' (text 'hello')"),
        ("farm/probe-1/telemetry", {"ts": NOW_S + 301, "x": 1}, "ahead of the receive time"),
        ("farm/probe-1/telemetry", {"ts": NOW_S - 401 * 86400, "x": 1}, "older than the retention window"),
        ("farm/probe-1/telemetry", {"ts": "yesterday", "x": 1}, "neither epoch seconds, epoch milliseconds nor ISO"),
        ("farm/probe-1/telemetry", {"ts": True, "x": 1}, "ts must be a number or an ISO-8601 string"),
        ("farm/probe-1/telemetry", {"ts": 1e18, "x": 1}, "not a usable time"),
        ("farm/probe-1/telemetry", {"values": [1, 2]}, "'values' must be an object"),
        ("farm/probe-1/status", "maybe", "must be 'online' or 'offline'"),
        (
            f"application/a/device/{DEV_EUI}/event/up",
            {"object": {"x": 1}, "deviceInfo": {"devEui": "xyz"}},
            "no valid DevEUI",
        ),
        (f"application/a/device/{DEV_EUI}/event/up", {"deviceInfo": {"devEui": DEV_EUI}}, "object is missing"),
        (
            "v3/farm/devices/p/up",
            {"end_device_ids": {"dev_eui": DEV_EUI}, "uplink_message": {}},
            "decoded_payload is missing",
        ),
        ("v3/farm/devices/p/up", [1], "must be a JSON object"),
    ],
)
def test_it_rejects_bad_input_with_a_reason(topic, payload, reason):
    msg = decode(topic, payload)

    assert msg.reason is not None
    assert reason in msg.reason
    assert msg.readings == []


def test_it_rejects_retained_telemetry_as_not_a_new_reading():
    msg = decode("farm/probe-1/telemetry", {"x": 1}, retained=True)

    assert "Retained telemetry" in (msg.reason or "")


def test_a_retained_status_is_decoded_and_marked_retained():
    msg = decode("farm/probe-1/status", "offline", retained=True)

    assert (msg.reason, msg.status, msg.retained) == (None, "offline", True)


def test_it_stores_the_good_elements_of_an_array_and_records_the_bad_ones():
    msg = decode(
        "farm/probe-1/telemetry",
        [
            {"ts": NOW_S - 60, "x": 1},
            {"x": 2},
            "junk",
            {"ts": NOW_S + 3600, "x": 3},
            {"ts": NOW_S - 30, "values": 5},
            {"ts": NOW_S - 10, "x": 4},
        ],
    )

    assert msg.reason is None
    assert sorted(v for _, _, v in msg.readings) == [1.0, 4.0]
    assert [note.split(":")[0] for note in notes(msg)] == ["element 1", "element 2", "element 3", "element 4"]
    assert "no 'ts'" in notes(msg)[0]
    assert "ahead of the receive time" in notes(msg)[2]
    assert [skip.field for skip in msg.skipped] == ["ts", "(element)", "ts", "values"]


def test_an_array_with_only_bad_elements_is_rejected_with_every_reason():
    msg = decode("farm/probe-1/telemetry", [{"x": 2}, {"ts": NOW_S + 3600, "x": 3}])

    assert msg.reason is not None
    assert "element 0: no 'ts'" in msg.reason
    assert "element 1: ts" in msg.reason


# --- review fixes: the key memo, collisions, share groups ----------------------------------------


@pytest.mark.parametrize(
    "poison",
    [{"ts": NOW_S, "values": {"ts": 5, "rain": 1}}, {"ts": NOW_S, "probe": {"ts": 5}, "rain": 1}],
    ids=["ts-inside-values", "ts-inside-a-nested-object"],
)
def test_a_ts_inside_values_or_a_nested_object_does_not_make_ts_a_metric_of_later_flat_messages(poison):
    decode("farm/probe-1/telemetry", poison)  # memoises "ts" as a metric key

    msg = decode("farm/probe-1/telemetry", {"ts": NOW_S - 60, "soil_moisture": 31.2})

    assert readings(msg) == {"soil_moisture": (NOW_US - 60_000_000, 31.2)}


def test_two_codec_keys_that_normalise_to_one_metric_keep_the_first_and_record_the_second():
    body = {"deviceInfo": {"devEui": DEV_EUI}, "object": {"batteryVoltage": 3.1, "battery_voltage": 3.2, "t": 1}}

    msg = decode(f"application/app/device/{DEV_EUI}/event/up", body)

    assert [(key, value) for _, key, value in msg.readings] == [("battery_voltage", 3.1), ("t", 1.0)]
    assert notes(msg) == [
        "'battery_voltage' = 3.2 (a second payload key that becomes 'battery_voltage' once names are normalised; "
        "kept the first value, 3.1)"
    ]


def test_a_nested_key_that_flattens_onto_a_flat_key_keeps_the_first_in_each_element():
    msg = decode(
        "farm/probe-1/telemetry",
        [{"ts": NOW_S - 60, "a": {"b": 1}, "a_b": 2}, {"ts": NOW_S - 30, "a_b": 3, "a": {"b": 4}}],
    )

    assert [(ts, key, value) for ts, key, value in msg.readings] == [
        (NOW_US - 60_000_000, "a_b", 1.0),
        (NOW_US - 30_000_000, "a_b", 3.0),
    ]
    assert [note.split(" (")[0] for note in notes(msg)] == ["element 0: 'a_b' = 2", "element 1: 'a_b' = 4"]


def test_subscription_filters_refuse_a_share_group_that_would_change_the_filter():
    with pytest.raises(ValueError, match="share group"):
        subscription_filters(["native"], "a/b")


# --- a bad value costs only itself: NaN, infinities, huge values ---------------------------------


def test_it_parses_nan_and_infinity_literals_and_stores_the_finite_values_beside_them():
    msg = decode(
        "farm/probe-1/telemetry", '{"soil_moisture": 31.5, "soil_temperature": NaN, "air_temperature": -Infinity}'
    )

    assert msg.reason is None
    assert readings(msg) == {"soil_moisture": (NOW_US, 31.5)}
    assert [(s.field, s.category, s.reason, s.example) for s in msg.skipped] == [
        ("soil_temperature", "not_finite", "not a finite number", "NaN"),
        ("air_temperature", "not_finite", "not a finite number", "-Infinity"),
    ]


def test_a_buffered_array_with_a_nan_in_its_middle_element_stores_the_other_elements():
    body = (
        f'[{{"ts": {NOW_S - 3}, "rain": 1}}, {{"ts": {NOW_S - 2}, "rain": NaN, "battery": 80}}, '
        f'{{"ts": {NOW_S - 1}, "rain": 3}}]'
    )

    msg = decode("farm/probe-1/telemetry", body)

    assert msg.reason is None
    assert msg.readings == [
        (NOW_US - 3_000_000, "rain", 1.0),
        (NOW_US - 2_000_000, "battery", 80.0),
        (NOW_US - 1_000_000, "rain", 3.0),
    ]
    assert notes(msg) == ["element 1: 'rain' (not a finite number: NaN)"]


@pytest.mark.parametrize("value", ["1e155", "-1e13", "1000000000001", "99999999999999999999999999", '"2e12"'])
def test_a_value_beyond_the_absolute_bound_is_skipped_and_the_rest_kept(value):
    msg = decode("farm/probe-1/telemetry", f'{{"soil_moisture": {value}, "rain": 1e12}}')

    assert readings(msg) == {"rain": (NOW_US, 1e12)}
    assert [(s.field, s.category) for s in msg.skipped] == [("soil_moisture", "too_large")]


def test_a_5000_digit_integer_is_a_skipped_value_not_an_internal_error():
    msg = decode("farm/probe-1/telemetry", '{"soil_moisture": ' + "7" * 5000 + ', "rain": 2}')

    assert msg.reason is None
    assert readings(msg) == {"rain": (NOW_US, 2.0)}
    assert msg.skipped[0].field == "soil_moisture"


def test_a_5000_digit_ts_rejects_the_message_with_a_plain_reason():
    msg = decode("farm/probe-1/telemetry", '{"ts": ' + "1" * 5000 + ', "rain": 2}')

    assert (msg.category, msg.readings) == ("time", [])
    assert "not a usable time" in (msg.reason or "")


def test_a_status_nested_1000_levels_deep_is_rejected_with_a_plain_reason():
    msg = decode("farm/probe-1/status", '{"status": ' * 1000 + '"online"' + "}" * 1000)

    assert msg.category == "status"
    assert "must be 'online' or 'offline'" in (msg.reason or "")


def test_a_64_kib_string_of_digits_is_decoded_in_linear_time():
    started = time.monotonic()

    msg = decode("farm/probe-1/telemetry", '{"a": "' + "1" * 60_000 + 'x", "b": 1}')

    assert readings(msg) == {"b": (NOW_US, 1.0)}
    assert time.monotonic() - started < 0.5  # the old numeric pattern backtracked for ~90 s


def test_every_rejection_has_a_category():
    cases = [("farm/p q/telemetry", "{}"), ("farm/p/telemetry", "nope"), ("farm/p/telemetry", '{"ts": "x", "a": 1}')]

    assert [decode(topic, body).category for topic, body in cases] == ["topic", "payload", "time"]
