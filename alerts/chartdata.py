"""An alert episode as the charts draw it: the dashboard's sensor chart and the history chart share one shape."""

from __future__ import annotations

from typing import Any

from alerts.models import AlertEpisode
from alerts.store import to_us


def _ms(us: int | None) -> int | None:
    return None if us is None else us // 1000


def episode_chart_entry(episode: AlertEpisode) -> dict[str, Any]:
    """An episode shaded on a chart (epoch ms); ``end`` None while it is still open. ``episode.rule`` must be loaded."""
    return {
        "episode": episode.pk,
        "sensor": episode.sensor_id,
        "rule": episode.rule_id,
        "rule_name": episode.rule.name,
        "severity": episode.rule.severity,
        "start": _ms(to_us(episode.started_at)),
        "end": _ms(to_us(episode.ended_at)),
        "worst": episode.worst_value,
    }
