"""Helpers shared by the alert tests: rules with sensible defaults, and ingesting through the real pipeline."""

from __future__ import annotations

import json
import time
from typing import Any

from alerts.models import AlertRule, Kind, Scope, Severity
from farm.models import Farm
from sensors.ingest.pipeline import Ingestor, RawMessage, WorkerConfig


def make_rule(farm: Farm, **overrides: Any) -> AlertRule:
    values: dict[str, Any] = {
        "name": "Soil too dry",
        "metric": "soil_moisture",
        "scope": Scope.FARM,
        "kind": Kind.BELOW,
        "threshold": 20.0,
        "clear": 23.0,
        "severity": Severity.WARNING,
    }
    values.update(overrides)
    return AlertRule.objects.create(farm=farm, **values)


def ingest(*payloads: object, uid: str = "probe-1") -> None:
    now_us = time.time_ns() // 1000
    messages = [RawMessage(f"farm/{uid}/telemetry".encode(), json.dumps(p).encode(), False, now_us) for p in payloads]
    Ingestor(config=WorkerConfig.from_settings(client_id="test-alerts")).ingest(messages)
