"""The history page, its data endpoint, the daily summaries and the CSV export.

Every view resolves the farm through ``farm.permissions.farm_for`` (VIEW_FARM, or EXPORT_DATA
for the export): a farm the user may not see is a 404, as on the dashboard. Each keeps only
the sensors of that farm among those asked for. Viewers may view and export.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from alerts.selectors import sensors_episodes
from farm.permissions import Action, farm_for
from sensors.history.exports import ExportSensor, export_lines
from sensors.history.selectors import sensor_daily, sensor_series

from . import payloads, selectors, summaries
from .forms import DataQuery, ExportQuery, HistoryQuery
from .windows import DEFAULT_RANGE, RANGE_LABELS, days_window, range_window

MAX_POINTS = 2000
MAX_SUMMARY_DAYS = 366  # a default season view: a year of rows at most


@require_GET
@login_required
def history_page(request: HttpRequest, farm_ref: str) -> HttpResponse:
    farm = farm_for(request.user, farm_ref, Action.VIEW_FARM)
    query = HistoryQuery(request.GET)
    valid = query.is_valid()  # an invalid query shows its errors over the default view
    chosen = selectors.sensors_of_farm(farm, query.cleaned_data.get("sensor", []) if valid else [])
    season = selectors.season_start_for(chosen)
    zone = ZoneInfo(farm.time_zone)
    range_key = query.range_key() if valid else DEFAULT_RANGE
    if valid:
        window = query.window(now=timezone.now(), zone=zone, season_start=season)
    else:
        window = range_window(key=DEFAULT_RANGE, now=timezone.now(), zone=zone, season_start=season)
    context = {
        "farm": farm,
        "query": query,
        "groups": selectors.picker_groups(farm),
        "chosen_ids": {s.pk for s in chosen},
        "ranges": list(RANGE_LABELS.items()),
        "range_key": range_key,
        "window": window,
        "config": payloads.page_config(farm=farm, sensors=chosen, window=window, range_key=range_key),
    }
    return render(request, "history/history.html", context, status=200 if valid else 400)


@require_GET
@login_required
@never_cache
def history_data(request: HttpRequest, farm_ref: str) -> JsonResponse:
    """The chosen sensors over an exact window (the page's range, or a zoom): ~2,000 points each at most, episodes."""
    farm = farm_for(request.user, farm_ref, Action.VIEW_FARM)
    query = DataQuery(request.GET)
    if not query.is_valid():
        return JsonResponse({"errors": query.errors.get_json_data()}, status=400)
    chosen = selectors.sensors_of_farm(farm, query.cleaned_data["sensor"])
    start, end = query.cleaned_data["start"], query.cleaned_data["end"]
    points = min(MAX_POINTS, query.cleaned_data.get("width") or MAX_POINTS)
    series = sensor_series(sensor_ids=[s.pk for s in chosen], start=start, end=end, max_points=points)
    zone = ZoneInfo(farm.time_zone)
    bars = [s.pk for s in chosen if s.key == summaries.RAIN]
    daily = sensor_daily(
        sensor_ids=bars,
        first=start.astimezone(zone).date(),
        last=(end - timedelta(microseconds=1)).astimezone(zone).date(),
    )
    episodes = sensors_episodes([s.pk for s in chosen], start=start, end=end)
    body = payloads.data_payload(sensors=chosen, series=series, daily=daily, episodes=episodes, start=start, end=end)
    return JsonResponse(body, json_dumps_params={"allow_nan": False})


@require_GET
@login_required
def farm_summaries(request: HttpRequest, farm_ref: str) -> HttpResponse:
    """One row per local day for the farm or one of its fields (``?field=<slug>``).

    By default: the field's season so far (from its season start), or the last 30 days.
    """
    farm = farm_for(request.user, farm_ref, Action.VIEW_FARM)
    fields = list(selectors.farm_fields(farm))
    fld = next((f for f in fields if f.slug == request.GET.get("field")), None)
    query = HistoryQuery(request.GET)
    today = timezone.now().astimezone(ZoneInfo(farm.time_zone)).date()
    first, last = today - timedelta(days=29), today
    if fld is not None and fld.season_start is not None and fld.season_start <= today:
        first = max(fld.season_start, today - timedelta(days=MAX_SUMMARY_DAYS - 1))
    if query.is_valid() and query.cleaned_data.get("start"):
        first, last = query.cleaned_data["start"], query.cleaned_data["end"]
    summary = summaries.farm_summary(farm=farm, fld=fld, first=first, last=last)
    chart = {
        "days": [d.day.isoformat() for d in summary.days],
        "rain": [d.rain for d in summary.days],
        "gddSum": [d.gdd_sum for d in summary.days],
    }
    context = {
        "farm": farm,
        "fields": fields,
        "field": fld,
        "summary": summary,
        "first": first,
        "last": last,
        "chart": chart,
    }
    return render(request, "history/summaries.html", context)


@require_GET
@login_required
def export_csv(request: HttpRequest, farm_ref: str) -> HttpResponseBase:
    """``export.csv?sensor=…&start=YYYY-MM-DD&end=YYYY-MM-DD&resolution=raw|hour|day``: streamed, flat memory."""
    farm = farm_for(request.user, farm_ref, Action.EXPORT_DATA)
    query = ExportQuery(request.GET)
    if not query.is_valid():
        return JsonResponse({"errors": query.errors.get_json_data()}, status=400)
    chosen = selectors.sensors_of_farm(farm, query.cleaned_data["sensor"])
    window = days_window(
        first=query.cleaned_data["start"], last=query.cleaned_data["end"], zone=ZoneInfo(farm.time_zone)
    )
    lines = export_lines(
        sensors=[ExportSensor(s.pk, f"{s.device.name} / {s.label}", s.unit) for s in chosen],
        start=window.start,
        end=window.end,
        resolution=query.resolution_key(),  # type: ignore[arg-type]
        time_zone=farm.time_zone,
    )
    content: Any = _async_chunks(lines) if isinstance(request, ASGIRequest) else _chunks(lines)
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    name = f"{farm.slug}-{window.first_day}-{window.last_day}-{query.resolution_key()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _chunks(lines: Iterator[list[str]]) -> Generator[bytes]:
    for chunk in lines:
        yield ("\n".join(chunk) + "\n").encode()


async def _async_chunks(lines: Iterator[list[str]]) -> AsyncIterator[bytes]:
    """Under ASGI: each chunk read in the request's database thread, so only one chunk is ever in memory.

    (Django would read a synchronous iterator to the end before sending a byte.)
    """
    chunks = _chunks(lines)
    step = sync_to_async(lambda: next(chunks, None), thread_sensitive=True)
    try:
        while (chunk := await step()) is not None:
            yield chunk
    finally:
        await sync_to_async(chunks.close, thread_sensitive=True)()
