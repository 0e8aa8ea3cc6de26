"""Topics and payloads exactly as docs/architecture.md §3 describes what devices and network servers send.

Each ``Message`` also carries the readings the ingest worker should store
from it — (timestamp, metric keys) — so a run can tell a benchmark exactly
which (uid, metric, ts) triples the broker acknowledged.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sensors.simulator.devices import Shape, SimDevice
from sensors.simulator.noise import mix, seed_of, uniform
from sensors.simulator.physics import CATALOGUE

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAMESPACE = uuid.UUID("6f0c6a51-43b5-4b57-9b53-3c1f4e0d2a77")
_MODELS = ("SE01-LB", "LSE01", "LHT65N", "WSC1-L", "LLDS12", "EM300-TH")

Sample = tuple[int, Mapping[str, float]]  # (timestamp in µs since the epoch, metric → value)
ExpectedReadings = tuple[tuple[int, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    shape: str  # native, chirpstack, ttn, status or malformed
    uid: str
    readings: ExpectedReadings = ()  # what the ingest should store: (ts µs, metric keys)
    kind: str = ""  # for malformed messages: which fault
    history: bool = False  # part of the backfill, not a live report


def ts_datetime(ts_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=ts_us)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _keys(device: SimDevice, values: Mapping[str, float]) -> tuple[str, ...]:
    """The metric keys of a reading; the device's own tuple when they match (shared, not copied)."""
    keys = tuple(values)
    return device.keys if keys == device.keys else keys


def native_ts(device: SimDevice, ts_us: int) -> int | str:
    """The device's timestamp style: epoch s, epoch ms, or ISO-8601 (ms) with the farm's UTC offset.

    ``ts_us`` must already be whole seconds or milliseconds to suit (the runner sees to that).
    """
    if device.ts_style == "s":
        return ts_us // 1_000_000
    if device.ts_style == "ms":
        return ts_us // 1_000
    return ts_datetime(ts_us).astimezone(ZoneInfo(device.time_zone)).isoformat(timespec="milliseconds")


def native_object(device: SimDevice, ts_us: int, values: Mapping[str, float]) -> dict[str, object]:
    if device.form == "values":
        return {"ts": native_ts(device, ts_us), "values": dict(values)}
    return {"ts": native_ts(device, ts_us), **values}


def native_telemetry(device: SimDevice, samples: Sequence[Sample], *, as_array: bool = False) -> Message:
    """One reading as an object; several, or a flushed buffer (``as_array``), as a JSON array."""
    objects = [native_object(device, ts, values) for ts, values in samples]
    body: object = objects[0] if len(objects) == 1 and not as_array else objects
    return Message(
        topic=f"farm/{device.uid}/telemetry",
        payload=_dumps(body),
        shape=Shape.NATIVE.value,
        uid=device.uid,
        readings=tuple((ts, _keys(device, values)) for ts, values in samples),
    )


def status_message(uid: str, *, online: bool) -> Message:
    """What a device publishes on connect (``online``) and what its Last Will says (``offline``)."""
    return Message(topic=f"farm/{uid}/status", payload=b"online" if online else b"offline", shape="status", uid=uid)


def rfc3339(ts_us: int) -> str:
    """UTC with 'Z' and the fraction trimmed of trailing zeros, as Go's RFC3339Nano prints it."""
    moment = ts_datetime(ts_us)
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return f"{moment:%Y-%m-%dT%H:%M:%S}" + (f".{fraction}" if fraction else "") + "Z"


def _as_text(key: str, value: float) -> str:
    """A number as a codec prints it: fixed decimals (the metric's own, so nothing is lost)."""
    info = CATALOGUE.get(key)
    return f"{value:.{info.decimals if info else 2}f}"


def codec_object(device: SimDevice, values: Mapping[str, float]) -> dict[str, object]:
    """A vendor codec's decoded payload: the metrics, some codecs' as numeric strings, some with a text
    field and a nested object beside them (each codec is consistent: it is a property of the device)."""
    decoded: dict[str, object] = {
        key: (_as_text(key, value) if key in device.string_keys else value) for key, value in values.items()
    }
    if device.codec_extras:
        decoded["status"] = "OK"
        decoded["sensor"] = {"model": _MODELS[device.seed % len(_MODELS)], "firmware": f"v1.{device.seed % 7}.2"}
    return decoded


@lru_cache(maxsize=65_536)
def _gateway_distances(device: SimDevice) -> tuple[float, ...]:
    """Mean RSSI at each gateway that hears the device: its distance and what is in the way."""
    return tuple(-68.0 - 50.0 * uniform(device.seed, 31, gw) for gw in range(device.gateways))


def _radio(device: SimDevice, entropy: int) -> list[tuple[int, int, float]]:
    """(gateway number, RSSI dBm, SNR dB) for each gateway that heard the uplink; fading from ``entropy``."""
    heard: list[tuple[int, int, float]] = []
    for gw, mean in enumerate(_gateway_distances(device)):
        bits = entropy >> (gw * 20)
        fading = ((bits & 0x3FF) + ((bits >> 10) & 0x3FF)) / 1023.0 - 1.0  # triangular, -1..1
        rssi = mean + 6.0 * fading
        snr = max(-20.0, min(12.0, (rssi + 118.0) / 3.0 + 1.5 * fading))
        heard.append((gw, round(rssi), round(snr, 1)))
    return heard


def _b64(number: int, size: int) -> str:
    return base64.b64encode(number.to_bytes(8, "big")[:size]).decode()


def _dev_addr(device: SimDevice) -> str:
    return f"{0x26000000 | (device.seed & 0x01FFFFFF):08x}"


def chirpstack_application_id(farm_slug: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"chirpstack-app:{farm_slug}"))


@lru_cache(maxsize=65_536)
def _chirpstack_static(device: SimDevice) -> tuple[str, dict[str, object], tuple[str, ...]]:
    """What stays the same in every uplink of a device: its topic, deviceInfo and the gateways' ids."""
    app_id = chirpstack_application_id(device.farm_slug)
    info: dict[str, object] = {
        "tenantId": str(uuid.uuid5(_NAMESPACE, "chirpstack-tenant")),
        "tenantName": "Furrow",
        "applicationId": app_id,
        "applicationName": device.farm_slug,
        "deviceProfileId": str(uuid.uuid5(_NAMESPACE, f"profile:{device.kind_name}")),
        "deviceProfileName": device.kind_name,
        "deviceName": device.uid,
        "devEui": device.uid.lower(),
        "deviceClassEnabled": "CLASS_A",
        "tags": {"farm": device.farm_slug},
    }
    gateways = tuple(f"b827ebfffe{seed_of('gateway', device.farm_slug, gw) & 0xFFFFFF:06x}" for gw in range(3))
    return f"application/{app_id}/device/{device.uid.lower()}/event/up", info, gateways


def chirpstack_uplink(device: SimDevice, ts_us: int, values: Mapping[str, float], fcnt: int) -> Message:
    """A ChirpStack v4 ``event/up`` as its MQTT integration publishes it (JSON marshaler)."""
    topic, info, gateways = _chirpstack_static(device)
    entropy = mix(device.seed, ts_us, fcnt)
    body = {
        "deduplicationId": str(uuid.UUID(int=(entropy << 64) | (entropy ^ ts_us) & 0xFFFFFFFFFFFFFFFF)),
        "time": rfc3339(ts_us),
        "deviceInfo": info,
        "devAddr": _dev_addr(device),
        "adr": True,
        "dr": 5,
        "fCnt": fcnt,
        "fPort": 2,
        "confirmed": False,
        "data": _b64(entropy, 3 + len(device.keys)),
        "object": codec_object(device, values),
        "rxInfo": [
            {
                "gatewayId": gateways[gw],
                "uplinkId": (entropy >> (gw * 16)) & 0xFFFF,
                "rssi": rssi,
                "snr": snr,
                "channel": fcnt % 8,
                "location": {},
                "context": _b64(entropy >> gw, 4),
                "crcStatus": "CRC_OK",
            }
            for gw, rssi, snr in _radio(device, entropy)
        ],
        "txInfo": {
            "frequency": 868_100_000 + 200_000 * (fcnt % 3),
            "modulation": {"lora": {"bandwidth": 125_000, "spreadingFactor": 7, "codeRate": "CR_4_5"}},
        },
    }
    return Message(
        topic=topic,
        payload=_dumps(body),
        shape=Shape.CHIRPSTACK.value,
        uid=device.uid.lower(),
        readings=((ts_us, _keys(device, values)),),
    )


_TTS_ID = re.compile(r"[^a-z0-9-]+")


def tts_application_id(farm_slug: str) -> str:
    """The Things Stack ids are lower-case letters, digits and dashes, at most 36 characters."""
    return (_TTS_ID.sub("-", farm_slug.lower()).strip("-")[:28] or "farm") + "-sensors"


def tts_topic(device: SimDevice, device_id: str) -> str:
    app = tts_application_id(device.farm_slug)
    owner = f"{app}@{device.tenant}" if device.tenant else app
    return f"v3/{owner}/devices/{device_id}/up"


@lru_cache(maxsize=65_536)
def _tts_static(device: SimDevice) -> tuple[str, dict[str, object], str, tuple[dict[str, str], ...]]:
    """Topic, end_device_ids, session key id and gateway ids: the same in every uplink of a device."""
    device_id = f"eui-{device.uid.lower()}"
    ids: dict[str, object] = {
        "device_id": device_id,
        "application_ids": {"application_id": tts_application_id(device.farm_slug)},
        "dev_eui": device.uid.upper(),
        "join_eui": "70B3D57ED0000000",
        "dev_addr": _dev_addr(device).upper(),
    }
    gateways = tuple(
        {"gateway_id": f"{device.farm_slug[:20]}-gw-{gw + 1}", "eui": f"B827EBFFFE{gw:06X}"} for gw in range(3)
    )
    return tts_topic(device, device_id), ids, _b64(mix(device.seed, 9), 8), gateways


def tts_uplink(device: SimDevice, ts_us: int, values: Mapping[str, float], fcnt: int) -> Message:
    """A The Things Stack v3 uplink message as its MQTT server publishes it."""
    topic, ids, session_key_id, gateways = _tts_static(device)
    received = rfc3339(ts_us)
    entropy = mix(device.seed, ts_us, fcnt)
    body = {
        "end_device_ids": ids,
        "correlation_ids": [f"as:up:01{entropy:024X}"],
        "received_at": received,
        "uplink_message": {
            "session_key_id": session_key_id,
            "f_port": 2,
            "f_cnt": fcnt,
            "frm_payload": _b64(entropy, 3 + len(device.keys)),
            "decoded_payload": codec_object(device, values),
            "rx_metadata": [
                {
                    "gateway_ids": gateways[gw],
                    "time": received,
                    "timestamp": (entropy >> gw) & 0xFFFFFFFF,
                    "rssi": rssi,
                    "channel_rssi": rssi,
                    "snr": snr,
                    "uplink_token": _b64(entropy >> (gw + 3), 8),
                    "channel_index": fcnt % 8,
                    "received_at": received,
                }
                for gw, rssi, snr in _radio(device, entropy)
            ],
            "settings": {
                "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7, "coding_rate": "4/5"}},
                "frequency": str(868_100_000 + 200_000 * (fcnt % 3)),
            },
            "received_at": received,
            "consumed_airtime": "0.061696s",
        },
    }
    return Message(
        topic=topic,
        payload=_dumps(body),
        shape=Shape.TTN.value,
        uid=device.uid.lower(),
        readings=((ts_us, _keys(device, values)),),
    )


def telemetry_message(device: SimDevice, ts_us: int, values: Mapping[str, float], fcnt: int = 0) -> Message:
    """One reading in the device's own shape."""
    if device.shape is Shape.CHIRPSTACK:
        return chirpstack_uplink(device, ts_us, values, fcnt)
    if device.shape is Shape.TTN:
        return tts_uplink(device, ts_us, values, fcnt)
    return native_telemetry(device, [(ts_us, values)])
