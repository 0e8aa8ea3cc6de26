"""Reads for the alerts pages: a farm's episodes by what needs attention, and its rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet

from alerts.models import THRESHOLD_KINDS, AlertAudit, AlertEpisode, AlertRule, Scope
from farm.models import Farm
from sensors.models import Sensor

RESOLVED_WINDOW = timedelta(days=7)
RESOLVED_LIMIT = 100


@dataclass(frozen=True, slots=True)
class EpisodeFilters:
    severity: str = ""
    field_id: int | None = None
    state: str = ""  # "", "firing", "acknowledged", "resolved"


@dataclass(frozen=True, slots=True)
class FarmAlerts:
    firing: list[AlertEpisode]
    acknowledged: list[AlertEpisode]
    resolved: list[AlertEpisode]


def _episodes(farm: Farm, filters: EpisodeFilters) -> QuerySet[AlertEpisode]:
    qs = AlertEpisode.objects.filter(rule__farm=farm).select_related(
        "rule", "sensor", "sensor__device", "sensor__device__field", "acknowledged_by"
    )
    if filters.severity:
        qs = qs.filter(rule__severity=filters.severity)
    if filters.field_id is not None:
        qs = qs.filter(sensor__device__field_id=filters.field_id)
    return qs


def farm_alerts(farm: Farm, *, now: datetime, filters: EpisodeFilters) -> FarmAlerts:
    """Firing (most severe, then newest first), acknowledged, then resolved in the last week."""
    qs = _episodes(farm, filters)
    open_ = list(qs.filter(ended_at__isnull=True).order_by("-started_at")) if filters.state != "resolved" else []
    rank = {"critical": 0, "warning": 1, "info": 2}
    firing = sorted((e for e in open_ if e.acknowledged_at is None), key=lambda e: rank.get(e.rule.severity, 3))
    acknowledged = [e for e in open_ if e.acknowledged_at is not None]
    resolved: list[AlertEpisode] = []
    if filters.state in ("", "resolved"):
        recent = qs.filter(ended_at__gte=now - RESOLVED_WINDOW).order_by("-ended_at")
        resolved = list(recent[:RESOLVED_LIMIT])
    if filters.state == "firing":
        acknowledged = []
    if filters.state == "acknowledged":
        firing = []
    return FarmAlerts(firing, acknowledged, resolved)


def farm_rules(farm: Farm) -> QuerySet[AlertRule]:
    """The farm's rules by name, each with ``named_count``: how many members it names."""
    return (
        AlertRule.objects.filter(farm=farm)
        .select_related("field", "device", "sensor", "updated_by")
        .annotate(named_count=Count("notify_users"))
        .order_by("name")
    )


def farm_rule(farm: Farm, rule_id: int) -> AlertRule:
    return AlertRule.objects.select_related("farm").get(farm=farm, pk=rule_id)


def farm_episode(farm: Farm, episode_id: int) -> AlertEpisode:
    return AlertEpisode.objects.select_related("rule", "rule__farm", "sensor").get(rule__farm=farm, pk=episode_id)


def farm_episode_detail(farm: Farm, episode_id: int) -> AlertEpisode:
    """One episode of ``farm`` with everything its page shows; ``DoesNotExist`` for another farm's."""
    return AlertEpisode.objects.select_related(
        "rule", "rule__farm", "sensor", "sensor__device", "sensor__device__field", "acknowledged_by"
    ).get(rule__farm=farm, pk=episode_id)


def episode_audit(episode: AlertEpisode, *, limit: int = 50) -> QuerySet[AlertAudit]:
    """The episode's acknowledgement and the changes to its rule while it was open, oldest first."""
    during = Q(rule_id=episode.rule_id, at__gte=episode.started_at)
    if episode.ended_at is not None:
        during &= Q(at__lte=episode.ended_at)
    return AlertAudit.objects.filter(Q(episode=episode) | during).select_related("actor").order_by("at", "id")[:limit]


def rule_audit(rule: AlertRule, *, limit: int = 20) -> QuerySet[AlertAudit]:
    return AlertAudit.objects.filter(rule=rule).select_related("actor").order_by("-at", "-id")[:limit]


def farms_open_counts(farm_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Each farm's open episodes as (firing, acknowledged), in one query; (0, 0) for a farm with none."""
    rows = (
        AlertEpisode.objects.filter(rule__farm_id__in=farm_ids, ended_at__isnull=True)
        .values("rule__farm_id")
        .annotate(
            firing=Count("id", filter=Q(acknowledged_at__isnull=True)),
            acknowledged=Count("id", filter=Q(acknowledged_at__isnull=False)),
        )
    )
    counts = dict.fromkeys(farm_ids, (0, 0))
    for row in rows:
        counts[row["rule__farm_id"]] = (row["firing"], row["acknowledged"])
    return counts


def farm_open_episodes(farm_id: int) -> list[AlertEpisode]:
    """The farm's open episodes (firing or acknowledged), newest first: what a live snapshot carries."""
    return list(
        AlertEpisode.objects.filter(rule__farm_id=farm_id, ended_at__isnull=True)
        .select_related("rule", "sensor", "acknowledged_by")
        .order_by("-started_at", "-id")
    )


@dataclass(frozen=True, slots=True)
class SensorAlerts:
    """What a sensor's chart draws: the threshold rules watching it and its episodes in a window."""

    rules: list[AlertRule]
    episodes: list[AlertEpisode]


def sensor_alerts(sensor: Sensor, *, start: datetime, end: datetime) -> SensorAlerts:
    """The enabled threshold rules covering ``sensor`` (any scope) and its episodes overlapping [start, end).

    Two queries. ``sensor.device`` must be loaded (its field decides field-scoped rules).
    """
    field_id = sensor.device.field_id
    covers = Q(scope=Scope.FARM) | Q(scope=Scope.DEVICE, device_id=sensor.device_id)
    covers |= Q(scope=Scope.SENSOR, sensor=sensor)
    if field_id is not None:
        covers |= Q(scope=Scope.FIELD, field_id=field_id)
    rules = AlertRule.objects.filter(
        covers, farm_id=sensor.device.farm_id, metric=sensor.key, enabled=True, kind__in=THRESHOLD_KINDS
    ).order_by("name", "pk")
    episodes = (
        AlertEpisode.objects.filter(sensor=sensor, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .select_related("rule")
        .order_by("started_at", "pk")
    )
    return SensorAlerts(rules=list(rules), episodes=list(episodes))


def sensors_episodes(sensor_ids: list[int], *, start: datetime, end: datetime) -> list[AlertEpisode]:
    """The episodes of ``sensor_ids`` overlapping ``[start, end)`` (open ones included), oldest first, rules loaded.

    One query: what the history chart shades for the sensors it shows.
    """
    if not sensor_ids:
        return []
    return list(
        AlertEpisode.objects.filter(sensor_id__in=sensor_ids, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .select_related("rule")
        .order_by("started_at", "pk")
    )
