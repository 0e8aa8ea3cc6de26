"""The farm dashboard page and the JSON it fetches.

Every view resolves the farm through ``selectors.farm_for_user``: a farm the
user may not see is a 404, whichever URL asks. Bodies are built in ``payloads``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from alerts import selectors as alert_selectors

from . import cards, charts, payloads, selectors
from .forms import SeriesQuery


@require_GET
@login_required
def farm_dashboard(request: HttpRequest, farm_ref: str) -> HttpResponse:
    farm = selectors.farm_for_user(request.user, farm_ref)
    now = timezone.now()
    open_alerts = alert_selectors.farm_open_episodes(farm.pk)
    sections, sparks = cards.farm_sections(farm, now=now, alerts=cards.sensor_alert_severities(open_alerts))
    devices = list(selectors.farm_devices(farm.pk))
    acknowledged = sum(e.acknowledged_at is not None for e in open_alerts)
    context = {
        "farm": farm,
        "page_now": now,
        "sections": sections,
        "summary": cards.farm_summary(devices),
        "devices": devices,
        "alert_counts": {"firing": len(open_alerts) - acknowledged, "acknowledged": acknowledged},
        "config": payloads.page_config(farm=farm, now=now, sparks=sparks, devices=devices, open_alerts=open_alerts),
        "ranges": list(charts.RANGES),
    }
    return render(request, "dashboard/farm_dashboard.html", context)


@require_GET
@login_required
@never_cache
def sensor_series(request: HttpRequest, farm_ref: str, sensor_id: int) -> JsonResponse:
    farm = selectors.farm_for_user(request.user, farm_ref)
    sensor = selectors.sensor_for_farm(farm, sensor_id)
    query = SeriesQuery(request.GET)
    if not query.is_valid():
        return _json(payloads.query_error(query.errors.get_json_data()), status=400)
    range_key, width = query.range_key(), query.width_px()
    series = charts.sensor_chart(
        sensor_id=sensor.pk, end=charts.window_end(timezone.now()), range_key=range_key, width=width
    )
    alerts = alert_selectors.sensor_alerts(sensor, start=series.start, end=series.end)
    return _json(
        payloads.series_payload(
            sensor=sensor, series=series, range_key=range_key, width=width, time_zone=farm.time_zone, alerts=alerts
        )
    )


@require_GET
@login_required
@never_cache
def farm_sparklines(request: HttpRequest, farm_ref: str) -> JsonResponse:
    """Every card's sparkline, for a page catching up after a reconnect."""
    farm = selectors.farm_for_user(request.user, farm_ref)
    end = charts.window_end(timezone.now())
    sensor_ids = list(selectors.dashboard_sensors(farm.pk).values_list("pk", flat=True))
    return _json(payloads.sparklines_payload(sparks=charts.farm_sparklines(sensor_ids=sensor_ids, end=end), end=end))


def _json(body: dict[str, Any], *, status: int = 200) -> JsonResponse:
    # Refuse NaN and infinities (json's default writes them, and browsers reject the body).
    return JsonResponse(body, status=status, json_dumps_params={"allow_nan": False})
