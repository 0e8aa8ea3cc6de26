"""Simulated devices: who publishes, in which shape, with which quirks.

Every choice (native or LoRaWAN network server, timestamp style, payload form,
which codec values arrive as strings) follows from the uid and the run's
seed, so the same device behaves the same way in every run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sensors.simulator.noise import mix, seed_of
from sensors.simulator.physics import CATALOGUE, DevicePhysics, Site

_DEVEUI = re.compile(r"[0-9A-Fa-f]{16}")


class Shape(StrEnum):
    NATIVE = "native"
    CHIRPSTACK = "chirpstack"
    TTN = "ttn"


SHAPE_CHOICES = ("native", "chirpstack", "ttn", "mixed")
TS_STYLES = ("s", "ms", "iso")


@dataclass(frozen=True, slots=True, eq=False)
class SimDevice:
    uid: str
    keys: tuple[str, ...]
    physics: DevicePhysics
    interval: int  # the device's nominal reporting interval in seconds
    shape: Shape
    farm_slug: str = "farm"
    kind_name: str = "Sensor"
    ts_style: str = "s"  # native "ts": epoch seconds, epoch milliseconds or ISO-8601 with the farm's offset
    form: str = "flat"  # native: a flat object or {"ts": ..., "values": {...}}
    string_keys: frozenset[str] = frozenset()  # LoRaWAN codec values sent as numeric strings
    codec_extras: bool = False  # LoRaWAN codec adds a text field and a nested object beside the values
    tenant: str = ""  # The Things Stack tenant; "" for an open-source install (no @tenant in the topic)
    gateways: int = 1
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.physics.seed

    @property
    def time_zone(self) -> str:
        return self.physics.site.time_zone


def is_deveui(uid: str) -> bool:
    return bool(_DEVEUI.fullmatch(uid))


def choose_shape(uid: str, requested: str) -> Shape:
    """Native for ordinary uids; a DevEUI goes through a network server unless ``native`` is forced.

    ``mixed``: an even DevEUI through ChirpStack, an odd one through The
    Things Stack — predictable, so consecutive DevEUIs in a demo show both.
    """
    if requested not in SHAPE_CHOICES:
        raise ValueError(f"shape must be one of {', '.join(SHAPE_CHOICES)}, got {requested!r}")
    if requested == "native" or not is_deveui(uid):
        return Shape.NATIVE
    if requested != "mixed":
        return Shape(requested)
    return Shape.CHIRPSTACK if int(uid, 16) % 2 == 0 else Shape.TTN


def site_for(*, farm_slug: str, time_zone: str = "UTC", latitude: float | None = None, seed: int = 0) -> Site:
    """The weather of one farm; without a latitude, a temperate 51°N."""
    return Site(seed=seed_of("site", farm_slug, seed), time_zone=time_zone, latitude=latitude or 51.0)


def build_device(
    *,
    uid: str,
    keys: Sequence[str],
    site: Site,
    interval: int,
    farm_slug: str,
    kind_name: str = "Sensor",
    shape: str = "mixed",
    seed: int = 0,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    allow_seconds: bool = True,
) -> SimDevice:
    """A device with its deterministic quirks.

    ``allow_seconds=False`` (load generation) keeps native timestamps at
    millisecond resolution so that several messages per second from one device
    stay distinct readings.
    """
    device_seed = seed_of("device", uid, seed)
    resolved = choose_shape(uid, shape)
    ts_style = TS_STYLES[mix(device_seed, 1) % 3]
    if ts_style == "s" and not allow_seconds:
        ts_style = "ms"
    return SimDevice(
        uid=uid,
        keys=tuple(keys),
        physics=DevicePhysics(site=site, seed=device_seed),
        interval=max(1, interval),
        shape=resolved,
        farm_slug=farm_slug,
        kind_name=kind_name,
        ts_style=ts_style,
        form="values" if mix(device_seed, 2) % 4 == 0 else "flat",
        string_keys=_string_keys(keys, device_seed) if resolved is not Shape.NATIVE else frozenset(),
        codec_extras=resolved is not Shape.NATIVE and mix(device_seed, 6) % 2 == 0,
        tenant="furrow" if mix(device_seed, 3) % 2 == 0 else "",
        gateways=1 + mix(device_seed, 4) % 3,
        ranges=dict(ranges or {}),
    )


def _string_keys(keys: Sequence[str], device_seed: int) -> frozenset[str]:
    """Half of the LoRaWAN codecs send their soil values (or first value) as strings, as Dragino's do."""
    if mix(device_seed, 5) % 2:
        return frozenset()
    soil = [key for key in keys if key.startswith("soil_")]
    return frozenset(soil or list(keys)[:1])


def synthetic_uid(index: int, shape: str, seed: int) -> str:
    """Unregistered devices for load tests: native names, or DevEUIs for LoRaWAN shapes.

    ``mixed`` makes every third device native and the rest DevEUIs.
    """
    lorawan = shape in ("chirpstack", "ttn") or (shape == "mixed" and index % 3 != 0)
    if lorawan:
        prefix = seed_of("synthetic", seed) >> 32
        return f"{prefix:08x}{index:08x}"
    return f"sim-{seed}-{index:05d}"


def synthetic_devices(
    count: int,
    *,
    keys: Sequence[str],
    site: Site,
    farm_slug: str,
    interval: int = 300,
    shape: str = "mixed",
    seed: int = 0,
    allow_seconds: bool = True,
) -> list[SimDevice]:
    unknown = [key for key in keys if key not in CATALOGUE]
    if unknown:
        raise ValueError(f"no physics for metric keys {unknown}; known: {', '.join(CATALOGUE)}")
    return [
        build_device(
            uid=synthetic_uid(i, shape, seed),
            keys=keys,
            site=site,
            interval=interval,
            farm_slug=farm_slug,
            kind_name=f"Simulator ({len(keys)} metrics)",
            shape=shape,
            seed=seed,
            allow_seconds=allow_seconds,
        )
        for i in range(count)
    ]


def catalogue_keys(count: int) -> tuple[str, ...]:
    """The first ``count`` metric keys of the catalogue (1–12), for synthetic devices."""
    if not 1 <= count <= len(CATALOGUE):
        raise ValueError(f"metrics must be between 1 and {len(CATALOGUE)}, got {count}")
    return tuple(CATALOGUE)[:count]
