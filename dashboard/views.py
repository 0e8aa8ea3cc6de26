"""The farm dashboard page and the JSON it fetches.

Every view resolves the farm through ``selectors.farm_for_user``: a farm the
user may not see is a 404, whichever URL asks.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import cards, charts, payloads, selectors
from .forms import SeriesQuery


@require_GET
@login_required
def farm_dashboard(request: HttpRequest, farm_ref: str) -> HttpResponse:
    farm = selectors.farm_for_user(request.user, farm_ref)
    now = timezone.now()
    sections, sparks = cards.farm_sections(farm, now=now)
    devices = list(selectors.farm_devices(farm.pk))
    end_ms = payloads.ms(charts.window_end(now))
    config: dict[str, Any] = {
        "farm": farm.pk,
        "slug": farm.slug,
        "timeZone": farm.time_zone,
        "wsPath": f"/ws/farms/{farm.pk}/",
        "seriesUrl": reverse("farm-sensor-series", args=[farm.slug, 0]),
        "sparklinesUrl": reverse("farm-sparklines", args=[farm.slug]),
        "loginUrl": reverse(settings.LOGIN_URL),
        "staleAfterIntervals": cards.STALE_AFTER_INTERVALS,
        "sparkSeconds": charts.SPARKLINE_SECONDS,
        "now": payloads.ms(now),
        "sparks": {str(k): v for k, v in sparks.items()},
        "sparkEnd": end_ms,
        "devices": {str(d.pk): payloads.device_entry(d) for d in devices},
    }
    context = {
        "farm": farm,
        "page_now": now,
        "sections": sections,
        "summary": cards.farm_summary(devices),
        "devices": devices,
        "config": config,
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
        return JsonResponse({"error": query.errors.get_json_data()}, status=400)
    range_key, width = query.range_key(), query.width_px()
    series = charts.sensor_series(
        sensor_id=sensor.pk, end=charts.window_end(timezone.now()), range_seconds=charts.RANGES[range_key], width=width
    )
    return JsonResponse(
        {
            "sensor": {
                "id": sensor.pk,
                "label": sensor.label,
                "unit": sensor.unit,
                "min": sensor.min_value,
                "max": sensor.max_value,
                "device": sensor.device.name,
            },
            "range": range_key,
            "width": width,
            "time_zone": farm.time_zone,
            "start": payloads.ms(series.start),
            "end": payloads.ms(series.end),
            "bucket_seconds": series.bucket_seconds,
            "t": series.t,
            "avg": series.avg,
            "min": series.min,
            "max": series.max,
            "count": series.count,
        }
    )


@require_GET
@login_required
@never_cache
def farm_sparklines(request: HttpRequest, farm_ref: str) -> JsonResponse:
    """Every card's sparkline, for a page catching up after a reconnect."""
    farm = selectors.farm_for_user(request.user, farm_ref)
    end = charts.window_end(timezone.now())
    sensor_ids = list(selectors.dashboard_sensors(farm.pk).values_list("pk", flat=True))
    lines = charts.farm_sparklines(sensor_ids=sensor_ids, end=end)
    return JsonResponse({"end": payloads.ms(end), "seconds": charts.SPARKLINE_SECONDS, "lines": lines})
