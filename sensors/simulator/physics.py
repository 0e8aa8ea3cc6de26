"""Physical signal models for the simulated farm: pure functions of (site, device seed, time).

Weather (temperature, cloud, rain, pressure, wind) belongs to the site, so the
devices of one farm agree about it; each device adds its own offset and
sensor noise. Nothing here keeps state: the soil moisture at time ``t`` is
computed from the rain and irrigation events of the preceding days, each of
which is itself a hash of (seed, day). Times are epoch seconds; the diurnal
cycle follows the farm's local solar time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from sensors.simulator.noise import gaussian, mix, seed_of, smooth, uniform

DAY = 86_400.0
HOUR = 3_600.0
_TWO_PI = 2.0 * math.pi
# How far back soil and water stores look: older rain has decayed to a few percent.
WATER_MEMORY_DAYS = 14

# Streams: one constant per independent random quantity.
_S_TMEAN, _S_TFAST, _S_CLOUD, _S_DEW, _S_RAIN, _S_IRR = 1, 2, 3, 4, 5, 6
_S_P1, _S_P2, _S_WIND, _S_GUST, _S_WDIR, _S_WDIRN = 7, 8, 9, 10, 11, 12
_S_SUN, _S_OFFSET, _S_NOISE, _S_SOIL, _S_BATT, _S_LEVEL = 13, 14, 15, 16, 17, 18


@dataclass(frozen=True, slots=True)
class MetricInfo:
    key: str
    label: str
    unit: str
    low: float
    high: float
    decimals: int


# The shipped metric keys (sensors/migrations/0004_shipped_device_kinds.py), in catalogue order.
CATALOGUE: dict[str, MetricInfo] = {
    m.key: m
    for m in (
        MetricInfo("soil_moisture", "Soil moisture", "%", 0.0, 100.0, 1),
        MetricInfo("soil_temperature", "Soil temperature", "°C", -30.0, 70.0, 1),
        MetricInfo("soil_ec", "Soil EC", "dS/m", 0.0, 20.0, 2),
        MetricInfo("air_temperature", "Air temperature", "°C", -40.0, 60.0, 1),
        MetricInfo("air_humidity", "Air humidity", "%", 0.0, 100.0, 1),
        MetricInfo("rain", "Rainfall", "mm", 0.0, 200.0, 2),
        MetricInfo("pressure", "Air pressure", "hPa", 870.0, 1085.0, 1),
        MetricInfo("wind_speed", "Wind speed", "m/s", 0.0, 75.0, 1),
        MetricInfo("wind_direction", "Wind direction", "°", 0.0, 360.0, 0),
        MetricInfo("solar_radiation", "Solar radiation", "W/m²", 0.0, 1500.0, 0),
        MetricInfo("water_level", "Water level", "m", 0.0, 10.0, 3),
        MetricInfo("battery", "Battery", "%", 0.0, 100.0, 1),
    )
}


@dataclass(frozen=True, slots=True)
class Site:
    """Where the weather happens: one per farm."""

    seed: int
    time_zone: str = "UTC"
    latitude: float = 51.0

    def __hash__(self) -> int:  # hot: the event caches are keyed by site
        return self.seed


@dataclass(frozen=True, slots=True)
class DevicePhysics:
    site: Site
    seed: int

    def __hash__(self) -> int:
        return self.seed


@dataclass(frozen=True, slots=True)
class Moment:
    """A time and what the models need to know about it, computed once per sample."""

    t: float
    since: float  # the previous reading's time: a rain gauge reports the rain in between
    hour: float  # local solar hour, 0–24 (clock hour without daylight saving)
    doy: int
    season: float  # +1 at the height of summer, -1 in deep winter


@dataclass(frozen=True, slots=True)
class WaterEvent:
    start: float
    end: float
    amount: float  # mm


def moment(site: Site, t: float, since: float | None = None) -> Moment:
    local = datetime.fromtimestamp(t, ZoneInfo(site.time_zone))
    hour = local.hour + local.minute / 60.0 + (local.second + local.microsecond / 1e6) / HOUR
    dst = local.dst()
    if dst:
        hour = (hour - dst.total_seconds() / HOUR) % 24.0
    doy = local.timetuple().tm_yday
    return Moment(t=t, since=t - 900.0 if since is None else since, hour=hour, doy=doy, season=_season(site, doy))


def _season(site: Site, doy: int) -> float:
    north = math.cos(_TWO_PI * (doy - 200) / 365.25)
    return north if site.latitude >= 0 else -north


def _stream(seed: int, stream: int) -> int:
    """The seed of one independent random quantity (cheap: the lattice hash mixes it fully)."""
    return seed ^ (stream * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF)


def _noise(d: DevicePhysics, key: int, t: float) -> float:
    """Sensor noise: independent per device, metric and second."""
    return gaussian(d.seed, _S_NOISE, key, int(t))


def _device_offset(d: DevicePhysics, key: int, spread: float) -> float:
    """A device's fixed calibration offset, within ±spread/2."""
    return (uniform(d.seed, _S_OFFSET, key) - 0.5) * spread


# --- Site weather -------------------------------------------------------------


def temperature_mean(site: Site, m: Moment) -> float:
    """The day's mean air temperature: season plus multi-day weather."""
    return 11.0 + 8.0 * m.season + 3.0 * smooth(_stream(site.seed, _S_TMEAN), m.t, 2.5 * DAY)


def cloudiness(site: Site, t: float) -> float:
    cloud = min(1.0, max(0.0, 0.45 + 0.65 * smooth(_stream(site.seed, _S_CLOUD), t, 9 * HOUR)))
    return max(cloud, 0.9) if rain_rate(site, t) > 0 else cloud


def diurnal_amplitude(site: Site, m: Moment) -> float:
    """Half the day's temperature range: wider in summer, narrower under cloud."""
    return (4.5 + 2.0 * m.season) * (1.0 - 0.55 * cloudiness(site, m.t))


@lru_cache(maxsize=8192)
def rain_events(site: Site, day: int) -> tuple[WaterEvent, ...]:
    """Showers starting on one UTC day: about a third of days are wet, more in winter."""
    doy = datetime.fromtimestamp(day * DAY, UTC).timetuple().tm_yday
    wet_share = 0.32 - 0.1 * _season(site, doy)
    if uniform(site.seed, _S_RAIN, day) >= wet_share:
        return ()
    count = 1 + (uniform(site.seed, _S_RAIN, day, 1) < 0.4)
    events = []
    for i in range(count):
        start = day * DAY + uniform(site.seed, _S_RAIN, day, i, 2) * DAY
        duration = (0.5 + 4.5 * uniform(site.seed, _S_RAIN, day, i, 3) ** 2) * HOUR
        rate = 0.3 * (8.0 / 0.3) ** uniform(site.seed, _S_RAIN, day, i, 4)  # log-uniform 0.3–8 mm/h
        events.append(WaterEvent(start=start, end=start + duration, amount=rate * duration / HOUR))
    return tuple(events)


def rain_rate(site: Site, t: float) -> float:
    """Rain intensity in mm/h at time t."""
    day = math.floor(t / DAY)
    rate = 0.0
    for d in (day - 1, day):
        for e in rain_events(site, d):
            if e.start <= t < e.end:
                rate += e.amount / (e.end - e.start) * HOUR
    return rate


def rain_between(site: Site, t0: float, t1: float) -> float:
    """Rain in mm that fell in [t0, t1)."""
    total = 0.0
    for day in range(math.floor(t0 / DAY) - 1, math.floor(t1 / DAY) + 1):
        for e in rain_events(site, day):
            overlap = min(t1, e.end) - max(t0, e.start)
            if overlap > 0:
                total += e.amount * overlap / (e.end - e.start)
    return total


@lru_cache(maxsize=8192)
def irrigation_events(d: DevicePhysics, day: int) -> tuple[WaterEvent, ...]:
    """Irrigation of the device's field: every few days at 05:00 in the warm months, unless it rained."""
    if uniform(d.seed, _S_IRR) >= 0.7:
        return ()  # a rain-fed field
    period = 3 + mix(d.seed, _S_IRR, 1) % 4
    if (day + mix(d.seed, _S_IRR, 2)) % period:
        return ()
    noon = datetime.fromtimestamp(day * DAY + 12 * HOUR, ZoneInfo(d.site.time_zone))
    if _season(d.site, noon.timetuple().tm_yday) < 0.2:
        return ()
    offset = noon.utcoffset()
    start = day * DAY + 5 * HOUR - (offset.total_seconds() if offset else 0.0)
    if rain_between(d.site, start - DAY, start) >= 4.0:
        return ()
    amount = 12.0 + 10.0 * uniform(d.seed, _S_IRR, day)
    return (WaterEvent(start=start, end=start + 2 * HOUR, amount=amount),)


def _stored_water(events: Iterable[WaterEvent], t: float, tau: float) -> float:
    """Water (mm) still held from past events: soaks in during an event, drains exponentially after."""
    total = 0.0
    for e in events:
        if t <= e.start:
            continue
        soaked = min(1.0, (t - e.start) / (e.end - e.start))
        total += e.amount * soaked * (math.exp(-(t - e.end) / tau) if t > e.end else 1.0)
    return total


@lru_cache(maxsize=4096)
def _recent_rain(site: Site, day: int) -> tuple[WaterEvent, ...]:
    return tuple(e for n in range(day - WATER_MEMORY_DAYS, day + 1) for e in rain_events(site, n))


@lru_cache(maxsize=8192)
def _recent_irrigation(d: DevicePhysics, day: int) -> tuple[WaterEvent, ...]:
    return tuple(e for n in range(day - WATER_MEMORY_DAYS, day + 1) for e in irrigation_events(d, n))


def _recent_water(d: DevicePhysics, t: float) -> tuple[WaterEvent, ...]:
    day = math.floor(t / DAY)
    return _recent_rain(d.site, day) + _recent_irrigation(d, day)


# --- Metrics --------------------------------------------------------------------


def air_temperature(d: DevicePhysics, m: Moment) -> float:
    """Peaks mid-afternoon, bottoms out before dawn; rain cools."""
    site = d.site
    value = temperature_mean(site, m) + 1.2 * smooth(_stream(site.seed, _S_TFAST), m.t, 0.6 * DAY)
    value += diurnal_amplitude(site, m) * math.cos(_TWO_PI * (m.hour - 15.0) / 24.0)
    value -= 1.5 * min(rain_rate(site, m.t), 3.0) / 3.0
    return value + _device_offset(d, 1, 0.8) + 0.15 * _noise(d, 1, m.t)


def air_humidity(d: DevicePhysics, m: Moment) -> float:
    """Relative humidity from a slowly varying dew point: high at night, low in the afternoon."""
    temperature = air_temperature(d, m)
    spread = 4.0 + 2.0 * smooth(_stream(d.site.seed, _S_DEW), m.t, 1.5 * DAY)
    dew_point = temperature - 0.5 if rain_rate(d.site, m.t) > 0 else temperature_mean(d.site, m) - spread
    dew_point = min(dew_point, temperature)
    ratio = math.exp(17.625 * dew_point / (243.04 + dew_point) - 17.625 * temperature / (243.04 + temperature))
    return min(100.0, max(5.0, 100.0 * ratio + 0.8 * _noise(d, 2, m.t)))


def soil_moisture(d: DevicePhysics, m: Moment) -> float:
    """Volumetric %, between the soil's dry floor and saturation: jumps with water, dries over days."""
    dry = 8.0 + 10.0 * uniform(d.seed, _S_SOIL, 1)
    saturated = 38.0 + 10.0 * uniform(d.seed, _S_SOIL, 2)
    tau = (2.5 + 3.0 * uniform(d.seed, _S_SOIL, 3)) * DAY * (1.0 - 0.3 * m.season)  # dries faster in summer
    stored = _stored_water(_recent_water(d, m.t), m.t, tau)
    value = dry + (saturated - dry) * (1.0 - math.exp(-stored / 18.0))
    return value + 0.15 * _noise(d, 3, m.t)


def soil_temperature(d: DevicePhysics, m: Moment) -> float:
    """At ~10 cm: the slow mean of the air, a damped diurnal wave three hours late."""
    mean = temperature_mean(d.site, m)
    wave = 0.3 * (4.5 + 2.0 * m.season) * math.cos(_TWO_PI * (m.hour - 18.0) / 24.0)
    return mean + wave + _device_offset(d, 4, 1.0) + 0.05 * _noise(d, 4, m.t)


def soil_ec(d: DevicePhysics, m: Moment) -> float:
    """Bulk EC in dS/m: rises with moisture and temperature (standard 2 %/°C)."""
    base = 0.3 + 1.2 * uniform(d.seed, _S_SOIL, 4)
    wetness = max(soil_moisture(d, m), 1.0) / 30.0
    temperature_factor = 1.0 + 0.019 * (soil_temperature(d, m) - 25.0)
    return max(0.0, base * wetness**1.4 * temperature_factor + 0.01 * _noise(d, 5, m.t))


def rain(d: DevicePhysics, m: Moment) -> float:
    """A tipping-bucket gauge: mm since the previous reading, with the gauge's own catch efficiency."""
    catch = 0.9 + 0.2 * uniform(d.seed, _S_RAIN)
    return rain_between(d.site, min(m.since, m.t), m.t) * catch


def pressure(d: DevicePhysics, m: Moment) -> float:
    """hPa: synoptic systems over days, the semi-diurnal tide, a dip in showers."""
    site = d.site
    value = 1013.0 + 13.0 * smooth(_stream(site.seed, _S_P1), m.t, 3.5 * DAY)
    value += 4.0 * smooth(_stream(site.seed, _S_P2), m.t, 0.8 * DAY)
    value += 0.6 * math.cos(2.0 * _TWO_PI * (m.hour - 10.0) / 24.0)
    value -= 3.0 * min(rain_rate(site, m.t), 4.0) / 4.0
    return value + _device_offset(d, 7, 1.6) + 0.08 * _noise(d, 7, m.t)


def wind_speed(d: DevicePhysics, m: Moment) -> float:
    """m/s: calmer at night, gusty, stronger in showers."""
    base = 1.2 + 4.5 * (0.5 + 0.5 * smooth(_stream(d.site.seed, _S_WIND), m.t, 1.3 * DAY))
    diurnal = 1.0 + 0.35 * math.cos(_TWO_PI * (m.hour - 14.0) / 24.0)
    gust = abs(gaussian(d.seed, _S_GUST, int(m.t))) * base / 6.0
    shower = 1.0 if rain_rate(d.site, m.t) > 0 else 0.0
    return max(0.0, base * diurnal + gust + shower)


def wind_direction(d: DevicePhysics, m: Moment) -> float:
    """Degrees from north: a prevailing south-westerly that veers over days, plus turbulence."""
    prevailing = 250.0 + 80.0 * smooth(_stream(d.site.seed, _S_WDIR), m.t, 1.7 * DAY)
    return (prevailing + 18.0 * gaussian(d.seed, _S_WDIRN, int(m.t))) % 360.0


def solar_elevation_sine(site: Site, m: Moment) -> float:
    declination = math.radians(23.44) * math.sin(_TWO_PI * (284 + m.doy) / 365.0)
    latitude = math.radians(site.latitude)
    hour_angle = math.radians(15.0 * (m.hour - 12.0))
    return math.sin(latitude) * math.sin(declination) + math.cos(latitude) * math.cos(declination) * math.cos(
        hour_angle
    )


def solar_radiation(d: DevicePhysics, m: Moment) -> float:
    """Global horizontal irradiance in W/m²: a clear-sky model (Haurwitz) dimmed by cloud (Kasten)."""
    sine = solar_elevation_sine(d.site, m)
    if sine <= 0.01:
        return 0.0
    clear = 1098.0 * sine * math.exp(-0.057 / sine)
    cloud = cloudiness(d.site, m.t)
    flicker = 1.0 + 0.08 * cloud * _noise(d, 10, m.t)
    return max(0.0, clear * (1.0 - 0.75 * cloud**3.4) * flicker)


def water_level(d: DevicePhysics, m: Moment) -> float:
    """Metres in a pond or tank: filled by rain from its catchment, drawn down by irrigation."""
    base = 0.5 + 1.5 * uniform(d.seed, _S_LEVEL)
    tau = 10.0 * DAY
    day = math.floor(m.t / DAY)
    rain_store = _stored_water(_recent_rain(d.site, day), m.t, tau)
    drawn = _stored_water(_recent_irrigation(d, day), m.t, tau)
    value = base + 0.01 * rain_store - 0.005 * drawn + 0.05 * smooth(_stream(d.seed, _S_LEVEL), m.t, 10 * DAY)
    return max(0.02, value + 0.002 * _noise(d, 11, m.t))


def battery_cycle(d: DevicePhysics) -> float:
    """Seconds between battery replacements for this device: 90 to 240 days."""
    return (90 + _stream(d.seed, _S_BATT) % 151) * DAY


def battery_age(d: DevicePhysics, t: float) -> float:
    """Seconds since the device's battery was last replaced."""
    return (t + uniform(d.seed, _S_BATT, 1) * battery_cycle(d)) % battery_cycle(d)


def battery(d: DevicePhysics, m: Moment) -> float:
    """State of charge: drains slowly over the cycle, a touch lower in the cold, back to full when replaced."""
    used = battery_age(d, m.t) / battery_cycle(d)
    cold = max(0.0, 5.0 - temperature_mean(d.site, m)) * 0.2
    return 100.0 - 80.0 * used**1.3 - cold + 0.05 * _noise(d, 12, m.t)


Model = Callable[[DevicePhysics, Moment], float]

MODELS: dict[str, Model] = {
    "soil_moisture": soil_moisture,
    "soil_temperature": soil_temperature,
    "soil_ec": soil_ec,
    "air_temperature": air_temperature,
    "air_humidity": air_humidity,
    "rain": rain,
    "pressure": pressure,
    "wind_speed": wind_speed,
    "wind_direction": wind_direction,
    "solar_radiation": solar_radiation,
    "water_level": water_level,
    "battery": battery,
}


def generic(d: DevicePhysics, key: str, m: Moment, low: float, high: float) -> float:
    """A metric the simulator has no physics for: a smooth wander inside its plausible range."""
    centre, span = (low + high) / 2.0, high - low
    key_seed = seed_of(key)
    value = centre + 0.35 * span * smooth(mix(d.seed, key_seed), m.t, 6 * HOUR)
    return value + 0.01 * span * gaussian(d.seed, key_seed, int(m.t))


def value_at(d: DevicePhysics, key: str, m: Moment, ranges: Mapping[str, tuple[float, float]] | None = None) -> float:
    """One metric, clamped to its plausible range and rounded like a real sensor."""
    info = CATALOGUE.get(key)
    if info is None:
        low, high = (ranges or {}).get(key, (0.0, 100.0))
        return round(min(high, max(low, generic(d, key, m, low, high))), 2)
    value = MODELS[key](d, m)
    return round(min(info.high, max(info.low, value)), info.decimals)


def sample(
    d: DevicePhysics,
    keys: Iterable[str],
    t: float,
    *,
    since: float | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, float]:
    """What a device measuring ``keys`` reports at time t (``since``: its previous report)."""
    m = moment(d.site, t, since)
    return {key: value_at(d, key, m, ranges) for key in keys}
