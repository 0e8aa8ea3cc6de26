"""``{% broker_drops_notice %}``: the admin index says when the MQTT broker dropped readings."""

from __future__ import annotations

import logging
from typing import Any

from django import template

from sensors.ingest.brokerdrops import broker_drops_health

logger = logging.getLogger(__name__)
register = template.Library()

SHOWN = {"dropping": "error", "dropped_before_start": "warning"}  # verdict → admin message level


@register.inclusion_tag("admin/sensors/broker_drops_notice.html")
def broker_drops_notice() -> dict[str, Any]:
    """One line per ingest worker whose broker dropped messages; nothing when all is well or unknown."""
    try:
        workers = broker_drops_health()["workers"]
    except Exception:  # the admin must open even when Redis is down; /healthz says more
        logger.warning("admin: reading the broker drop figures failed", exc_info=True)
        return {"notices": []}
    notices = [
        {"client_id": client_id, "level": SHOWN[w["status"]], "message": w["message"]}
        for client_id, w in sorted(workers.items())
        if w["status"] in SHOWN
    ]
    return {"notices": notices}
