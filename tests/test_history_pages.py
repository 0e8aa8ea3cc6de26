"""The history page, its data, the daily summaries and the CSV export (real PostgreSQL)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from alerts.models import AlertEpisode
from farm.models import Farm, Membership, Role
from history.summaries import gdd
from sensors.history.rollups import rollups_refresh
from sensors.ingest.pipeline import Ingestor, WorkerConfig
from sensors.models import Device, Sensor
from tests.alert_fixtures import make_rule
from tests.factories import DeviceFactory, FieldFactory, MembershipFactory, SensorFactory, UserFactory
from tests.history_clock import recent_clock_changes
from tests.history_fixtures import strict_json
from tests.test_ingest_store import raw

pytestmark = pytest.mark.django_db
LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def viewer() -> Membership:
    return cast(Membership, MembershipFactory(role=Role.VIEWER, farm__time_zone="Europe/London"))


@pytest.fixture
def client_of(viewer: Membership) -> Client:
    client = Client()
    client.force_login(viewer.user)
    return client


def _gauge(farm: Farm) -> tuple[Device, Sensor]:
    device = cast(Device, DeviceFactory(farm=farm, uid="yard-gauge", name="Yard gauge", field=None))
    return device, cast(Sensor, SensorFactory(device=device, key="rain", label="Rainfall", unit="mm"))


def _rain_through_clock_changes(farm: Farm) -> tuple[Sensor, date, date]:
    """0.2 mm every 10 minutes from the Saturday to the Monday of each of London's clock changes, through ingest."""
    _, gauge = _gauge(farm)
    spring, fall = recent_clock_changes(datetime.now(tz=UTC))
    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="test-history"))
    for sunday in (spring, fall):
        # In UTC: aware arithmetic in London's zone would be wall-clock arithmetic and skip the repeated hour.
        start = datetime.combine(sunday - timedelta(days=1), datetime.min.time(), tzinfo=LONDON).astimezone(UTC)
        end = datetime.combine(sunday + timedelta(days=2), datetime.min.time(), tzinfo=LONDON).astimezone(UTC)
        points, moment = [], start
        while moment < end:
            points.append({"ts": moment.timestamp(), "rain": 0.2})
            moment += timedelta(minutes=10)
        for i in range(0, len(points), 100):
            ingestor.ingest([raw("farm/yard-gauge/telemetry", points[i : i + 100])])
    rollups_refresh()  # what the beat task does within seconds
    return gauge, spring, fall


def _expected(sunday: date) -> dict[date, float]:
    """Rain per local day around a clock change: 1.2 mm an hour, 23 or 25 hours on the Sunday."""
    hours = 23 if sunday.month == 3 else 25
    return {sunday - timedelta(days=1): 28.8, sunday: round(1.2 * hours, 1), sunday + timedelta(days=1): 28.8}


def test_a_non_member_gets_404_everywhere(viewer):
    _, gauge = _gauge(viewer.farm)
    stranger = Client()
    stranger.force_login(cast(User, UserFactory()))
    slug = viewer.farm.slug
    for url in (
        reverse("history-page", args=[slug]),
        reverse("history-summaries", args=[slug]),
        reverse("history-data", args=[slug]) + f"?sensor={gauge.pk}&start=2026-01-01T00:00Z&end=2026-01-02T00:00Z",
        reverse("history-export", args=[slug]) + f"?sensor={gauge.pk}&start=2026-01-01&end=2026-01-02",
    ):
        assert stranger.get(url).status_code == 404, url


def test_the_page_lists_the_farms_sensors_by_field_and_keeps_its_state_in_the_url(viewer, client_of):
    _, gauge = _gauge(viewer.farm)
    probe = cast(
        Sensor, SensorFactory(device__farm=viewer.farm, device__field=FieldFactory(farm=viewer.farm, name="North"))
    )
    other = cast(Sensor, SensorFactory())  # another farm's sensor: never shown, never read
    url = reverse("history-page", args=[viewer.farm.slug])

    response = client_of.get(url, {"sensor": [gauge.pk, probe.pk, other.pk], "range": "30d"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "North" in html
    assert "Whole farm" in html
    config = response.context["config"]
    assert [s["id"] for s in config["sensors"]] == [gauge.pk, probe.pk]
    assert config["range"] == "30d"
    assert (config["end"] - config["start"]) == 30 * 86400 * 1000
    assert 'id="history-config"' in html
    assert "<script>" not in html  # data via json_script only, no inline script


def test_a_custom_range_is_whole_local_days_and_more_than_8_sensors_is_refused(viewer, client_of):
    url = reverse("history-page", args=[viewer.farm.slug])
    response = client_of.get(url, {"start": "2026-03-29", "end": "2026-03-29"})
    config = response.context["config"]
    assert config["range"] == "custom"
    assert (config["end"] - config["start"]) == 23 * 3600 * 1000  # the spring-forward day
    assert client_of.get(url, {"sensor": list(range(1, 10))}).status_code == 400


def test_a_named_range_wins_over_stale_dates(viewer, client_of):
    url = reverse("history-page", args=[viewer.farm.slug])
    response = client_of.get(url, {"range": "24h", "start": "2026-03-29", "end": "2026-03-29"})
    assert response.context["config"]["range"] == "24h"


def test_this_season_starts_at_the_fields_season_start(viewer, client_of):
    today = datetime.now(tz=LONDON).date()
    fld = FieldFactory(farm=viewer.farm, season_start=today - timedelta(days=40))
    sensor = cast(Sensor, SensorFactory(device__farm=viewer.farm, device__field=fld))
    url = reverse("history-page", args=[viewer.farm.slug])
    config = client_of.get(url, {"sensor": sensor.pk, "range": "season"}).context["config"]
    assert config["firstDay"] == (today - timedelta(days=40)).isoformat()


def test_the_data_carries_the_shown_sensors_alert_episodes_in_the_window(viewer, client_of):
    probe = cast(Sensor, SensorFactory(device__farm=viewer.farm, key="soil_moisture", unit="%"))
    other = cast(Sensor, SensorFactory(device__farm=viewer.farm, key="soil_moisture", unit="%"))  # not shown
    dry = make_rule(viewer.farm, name="Too dry", severity="critical")
    frost = make_rule(viewer.farm, name="Frost", metric="air_temperature", severity="info")
    start = datetime(2026, 5, 1, tzinfo=UTC)
    end = start + timedelta(days=7)
    inside = AlertEpisode.objects.create(
        rule=dry, sensor=probe, started_at=start + timedelta(days=1), ended_at=start + timedelta(days=1, hours=3)
    )
    straddling = AlertEpisode.objects.create(
        rule=frost, sensor=probe, started_at=start - timedelta(hours=5), ended_at=start + timedelta(hours=2)
    )
    still_open = AlertEpisode.objects.create(rule=dry, sensor=probe, started_at=start + timedelta(days=6))
    AlertEpisode.objects.create(  # over before the window
        rule=frost, sensor=probe, started_at=start - timedelta(days=3), ended_at=start - timedelta(days=2)
    )
    AlertEpisode.objects.create(rule=dry, sensor=other, started_at=start + timedelta(days=2))  # another sensor's

    data = strict_json(
        client_of.get(
            reverse("history-data", args=[viewer.farm.slug]),
            {"sensor": probe.pk, "start": start.isoformat(), "end": end.isoformat()},
        ).content
    )

    def ms(moment: datetime | None) -> int | None:
        return int(moment.timestamp() * 1000) if moment else None

    assert data["episodes"] == [
        {"episode": e.pk, "sensor": probe.pk, "rule": e.rule_id, "rule_name": e.rule.name,
         "severity": e.rule.severity, "start": ms(e.started_at), "end": ms(e.ended_at), "worst": None}
        for e in (straddling, inside, still_open)
    ]  # fmt: skip
    assert data["episodes"][2]["end"] is None  # still open: the chart shades it to the window's end


def test_dst_rain_sums_exactly_per_local_day_in_page_data_summary_and_export(viewer, client_of):
    gauge, spring, fall = _rain_through_clock_changes(viewer.farm)
    slug = viewer.farm.slug
    for sunday in (spring, fall):
        expected = _expected(sunday)
        first, last = min(expected), max(expected)
        start = datetime.combine(first, datetime.min.time(), tzinfo=LONDON)
        end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=LONDON)

        data = strict_json(
            client_of.get(
                reverse("history-data", args=[slug]),
                {"sensor": gauge.pk, "start": start.isoformat(), "end": end.isoformat()},
            ).content
        )
        [series] = data["series"]
        assert dict(zip(series["days"], [round(v, 6) for v in series["dayTotals"]], strict=True)) == {
            d.isoformat(): v for d, v in expected.items()
        }

        summary = client_of.get(
            reverse("history-summaries", args=[slug]), {"start": first.isoformat(), "end": last.isoformat()}
        ).context["summary"]
        assert {d.day: round(d.rain, 6) for d in summary.days} == expected

        export = reverse("history-export", args=[slug])
        params = {"sensor": gauge.pk, "start": first.isoformat(), "end": last.isoformat()}
        day_rows = list(csv.DictReader(io.StringIO(_body(client_of.get(export, {**params, "resolution": "day"})))))
        assert {
            date.fromisoformat(r["date"]): round(float(r["mean"]) * int(r["count"]), 6) for r in day_rows
        } == expected
        totals: dict[date, float] = defaultdict(float)
        raw_rows = list(csv.DictReader(io.StringIO(_body(client_of.get(export, params)))))
        for row in raw_rows:
            totals[date.fromisoformat(row["time"][:10])] += float(row["value"])
        assert {d: round(v, 6) for d, v in totals.items()} == expected
        offsets = {row["time"][-6:] for row in raw_rows}
        assert offsets == {"+00:00", "+01:00"}  # ISO 8601 with the farm's offset, both sides of the change


def _body(response) -> str:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return b"".join(response.streaming_content).decode()


def test_export_rows_carry_the_sensor_and_drop_other_farms_sensors(viewer, client_of):
    _, gauge = _gauge(viewer.farm)
    other = cast(Sensor, SensorFactory())
    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="test-history-export"))
    moment = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(hours=2)
    ingestor.ingest([raw("farm/yard-gauge/telemetry", {"ts": moment.timestamp(), "rain": 1.5})])
    rollups_refresh()
    day = moment.astimezone(LONDON).date().isoformat()
    url = reverse("history-export", args=[viewer.farm.slug])

    text = _body(client_of.get(url, {"sensor": [gauge.pk, other.pk], "start": day, "end": day}))

    assert text.splitlines() == [
        "sensor_id,sensor,unit,time,value",
        f"{gauge.pk},Yard gauge / Rainfall,mm,{moment.astimezone(LONDON).isoformat()},1.5",
    ]
    hourly = _body(client_of.get(url, {"sensor": gauge.pk, "start": day, "end": day, "resolution": "hour"}))
    assert hourly.splitlines()[1].endswith(",1,1.5,1.5,1.5")
    assert client_of.get(url, {"sensor": gauge.pk, "start": day}).status_code == 400


def test_the_export_command_writes_what_the_url_gives(viewer, client_of, tmp_path):
    gauge, spring, _ = _rain_through_clock_changes(viewer.farm)
    params = {"sensor": gauge.pk, "start": (spring - timedelta(days=1)).isoformat(), "end": spring.isoformat()}
    from_url = _body(client_of.get(reverse("history-export", args=[viewer.farm.slug]), params))
    out = tmp_path / "rain.csv"

    call_command(
        "export_readings",
        farm=viewer.farm.slug,
        sensor=[gauge.pk],
        start=params["start"],
        end=params["end"],
        output=str(out),
        no_progress=True,
    )

    assert out.read_text() == from_url
    assert len(from_url.splitlines()) == 1 + 6 * (24 + 23)


def test_gdd_clamps_both_temperatures_to_the_base_and_the_cap():
    assert gdd(t_min=5, t_max=25) == pytest.approx(7.5)  # (10 + 25) / 2 - 10
    assert gdd(t_min=18, t_max=36) == pytest.approx(14.0)  # (18 + 30) / 2 - 10
    assert gdd(t_min=-3, t_max=8) == 0.0
    assert gdd(t_min=6, t_max=20, base=4.5) == pytest.approx(8.5)


def test_the_summary_has_gdd_summed_from_the_season_start_and_chill_hours(viewer, client_of):
    fld = FieldFactory(farm=viewer.farm, season_start=date(2026, 5, 1), gdd_base_c=Decimal("5.0"))
    air = cast(
        Sensor,
        SensorFactory(
            device__farm=viewer.farm, device__field=fld, device__uid="air-1", key="air_temperature", unit="°C"
        ),
    )
    from sensors.history.rollups import rollups_rebuild
    from sensors.models import Reading

    rows = []
    for day in range(3):  # 2, 3 and 4 May: 4 °C from 00:00 to 05:59 local, 20 °C after
        base = datetime(2026, 5, 2 + day, tzinfo=LONDON)
        rows += [Reading(sensor=air, ts=base + timedelta(hours=h), value=4.0 if h < 6 else 20.0) for h in range(24)]
    Reading.objects.bulk_create(rows)
    rollups_rebuild(
        sensor_ids=[air.pk], start=datetime(2026, 5, 1, tzinfo=LONDON), end=datetime(2026, 5, 6, tzinfo=LONDON)
    )

    response = client_of.get(
        reverse("history-summaries", args=[viewer.farm.slug]),
        {"field": fld.slug, "start": "2026-05-03", "end": "2026-05-04"},
    )
    days = response.context["summary"].days
    assert [d.day for d in days] == [date(2026, 5, 3), date(2026, 5, 4)]
    assert [(d.t_min, d.t_max, d.chill_hours) for d in days] == [(4.0, 20.0, 6), (4.0, 20.0, 6)]
    assert [d.gdd for d in days] == [pytest.approx(7.5)] * 2  # (5 + 20) / 2 - 5
    assert [d.gdd_sum for d in days] == [pytest.approx(15.0), pytest.approx(22.5)]  # since 1 May (2 May counts)


def test_a_fields_summary_shows_its_season_so_far_by_default(viewer, client_of):
    today = datetime.now(tz=LONDON).date()
    fld = FieldFactory(farm=viewer.farm, season_start=today - timedelta(days=70))
    bare = FieldFactory(farm=viewer.farm)  # no season start
    url = reverse("history-summaries", args=[viewer.farm.slug])

    season = client_of.get(url, {"field": fld.slug}).context
    plain = client_of.get(url, {"field": bare.slug}).context

    assert (season["first"], season["last"]) == (today - timedelta(days=70), today)
    assert len(season["summary"].days) == 71
    assert (plain["first"], plain["last"]) == (today - timedelta(days=29), today)


def test_under_asgi_the_export_streams_chunk_by_chunk(viewer, monkeypatch):
    """The async view path: Django would read a sync iterator whole before sending; ours yields per chunk."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    from sensors.history import exports

    monkeypatch.setattr(exports, "CHUNK_ROWS", 50)
    gauge, spring, _ = _rain_through_clock_changes(viewer.farm)
    client = AsyncClient()
    client.force_login(viewer.user)
    params = {"sensor": str(gauge.pk), "start": spring.isoformat(), "end": spring.isoformat()}

    async def fetch() -> list[bytes]:
        response: Any = await client.get(reverse("history-export", args=[viewer.farm.slug]), params)
        assert response.is_async
        return [chunk async for chunk in response.streaming_content]

    chunks = async_to_sync(fetch)()
    assert len(chunks) == 1 + (6 * 23 + 49) // 50  # the header, then 50-row chunks
    assert len(b"".join(chunks).decode().splitlines()) == 1 + 6 * 23
