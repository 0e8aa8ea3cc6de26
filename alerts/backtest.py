"""What a rule would have done over the last days of real readings, before it is saved.

The same pure evaluator the ingest writer runs, fed each covered sensor's stored readings
in time order. Readings only: where the sweep would fire a pending alert during a long
gap, the backtest fires it at the next reading, so a backtest can only under-count time
in alarm for sensors that report less often than the rule's "for".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import QuerySet

from alerts.evaluate import Condition, State, Transition, evaluate_readings
from alerts.index import condition_of
from alerts.models import THRESHOLD_KINDS, AlertRule, Scope
from alerts.specs import RuleSpec
from alerts.store import to_us
from farm.models import Farm
from sensors.history.selectors import sensor_raw_points
from sensors.models import Sensor

BACKTEST_DAYS = 7
MAX_SENSORS = 50
CHART_POINTS = 2000


@dataclass(slots=True)
class SensorRun:
    sensor_id: int
    label: str
    firings: int = 0
    firing_seconds: float = 0.0
    episodes: list[tuple[int, int]] = field(default_factory=list)  # (start, end) in ms


@dataclass(frozen=True, slots=True)
class Backtest:
    start_ms: int
    end_ms: int
    sensors: int
    firings: int
    firing_seconds: float
    chart: SensorRun | None
    chart_t: list[int]
    chart_v: list[float]


def covered_sensors(farm: Farm, spec: RuleSpec) -> QuerySet[Sensor]:
    qs = Sensor.objects.filter(device__farm=farm, device__enabled=True, key=spec.metric).select_related("device")
    if spec.scope == Scope.FIELD:
        qs = qs.filter(device__field=spec.field)
    elif spec.scope == Scope.DEVICE:
        qs = qs.filter(device=spec.device)
    elif spec.scope == Scope.SENSOR:
        qs = qs.filter(pk=spec.sensor.pk) if spec.sensor is not None else qs.none()
    return qs.order_by("id")


def backtest_run(*, farm: Farm, spec: RuleSpec, now: datetime) -> Backtest | None:
    """None for rule kinds that readings alone cannot replay (no data, device offline)."""
    if spec.kind not in THRESHOLD_KINDS:
        return None
    cond = condition_of(AlertRule(**spec.column_values()))
    start = now - timedelta(days=BACKTEST_DAYS)
    runs: list[tuple[SensorRun, list[int], list[float]]] = []
    for sensor in covered_sensors(farm, spec)[:MAX_SENSORS]:
        ts, values = _readings(sensor.pk, start, now)
        run = SensorRun(sensor.pk, f"{sensor.device.name} · {sensor.label}")
        for fired, resolved in replay(cond, ts, values):
            run.firings += 1
            run.episodes.append((fired.at // 1000, (resolved.at if resolved else to_us(now) or 0) // 1000))
        run.firing_seconds = sum(end - begin for begin, end in run.episodes) / 1000
        runs.append((run, ts, values))
    return _summary(runs, start, now)


def replay(cond: Condition, ts: Sequence[int], values: Sequence[float]) -> list[tuple[Transition, Transition | None]]:
    """The episodes a sensor's readings (ascending, µs) make from a clear state: (fired, resolved or None if open)."""
    episodes: list[tuple[Transition, Transition | None]] = []
    fired: Transition | None = None
    for tr in evaluate_readings(cond, State(), ts, values).transitions:
        if tr.kind == "fired":
            fired = tr
        elif tr.kind == "resolved" and fired is not None:
            episodes.append((fired, tr))
            fired = None
    if fired is not None:
        episodes.append((fired, None))
    return episodes


def _readings(sensor_id: int, start: datetime, end: datetime) -> tuple[list[int], list[float]]:
    points = sensor_raw_points(sensor_id=sensor_id, start=start, end=end)
    return points.ts, points.values


def _summary(runs: list[tuple[SensorRun, list[int], list[float]]], start: datetime, end: datetime) -> Backtest:
    chart = max(runs, key=lambda r: (r[0].firing_seconds, len(r[1])), default=None)
    chart_t: list[int] = []
    chart_v: list[float] = []
    if chart is not None:
        step = max(1, len(chart[1]) // CHART_POINTS)
        chart_t = [t // 1000 for t in chart[1][::step]]
        chart_v = chart[2][::step]
    return Backtest(
        start_ms=(to_us(start) or 0) // 1000,
        end_ms=(to_us(end) or 0) // 1000,
        sensors=len(runs),
        firings=sum(r[0].firings for r in runs),
        firing_seconds=sum(r[0].firing_seconds for r in runs),
        chart=chart[0] if chart else None,
        chart_t=chart_t,
        chart_v=chart_v,
    )
