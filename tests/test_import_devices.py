"""``manage.py import_devices``: bulk registration from CSV, all or nothing, every bad row by line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError

from farm.models import Farm, Field
from sensors import services
from sensors.importing import load_directory, plan_import, read_rows
from sensors.models import Device, Sensor
from tests.factories import DeviceFactory, FarmFactory, FieldFactory

pytestmark = pytest.mark.django_db

HEADER = "farm,field,uid,name,kind\n"


@pytest.fixture
def home_farm() -> Farm:
    farm = FarmFactory.create(name="Home Farm", slug="home-farm")
    FieldFactory.create(farm=farm, name="North Paddock", slug="north-paddock")
    FieldFactory.create(farm=farm, name="Orchard", slug="orchard")
    return farm


def write_csv(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "devices.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def run(path: Path, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_devices", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(path: Path, *args: str) -> tuple[str, list[str]]:
    """The CommandError's message and the error lines written to stderr."""
    err = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("import_devices", str(path), *args, stdout=io.StringIO(), stderr=err)
    return str(caught.value), err.getvalue().splitlines()


# --- good files -------------------------------------------------------------------------------------


def test_it_imports_a_good_file_with_sensors_from_each_kind(tmp_path, home_farm):
    path = write_csv(
        tmp_path,
        "Home Farm,North Paddock,A84041000181C5B0,North probe 1,soil-probe\n"
        'home-farm,orchard,orchard-th-1,"Orchard air, east",Air temperature & humidity\n'
        "home farm,,yard-weather,Yard weather station,weather-station\n",
    )
    out, _ = run(path)
    assert out.strip().splitlines()[-1] == "Imported 3 devices with 12 sensors."
    devices = {d.uid: d for d in Device.objects.select_related("field", "kind")}
    assert set(devices) == {"a84041000181c5b0", "orchard-th-1", "yard-weather"}
    assert devices["a84041000181c5b0"].field == Field.objects.get(slug="north-paddock")
    assert devices["orchard-th-1"].name == "Orchard air, east"
    assert devices["orchard-th-1"].kind.slug == "air-th"
    assert devices["yard-weather"].field is None
    assert all(d.farm_id == home_farm.pk and d.enabled for d in devices.values())
    assert Sensor.objects.filter(device__uid="yard-weather").count() == 7


def test_it_accepts_columns_in_any_order_with_a_bom_and_blank_lines(tmp_path, home_farm):
    path = tmp_path / "devices.csv"
    path.write_bytes(
        "\ufeffUID, Name ,Kind,Farm,Field\r\nprobe-1,Probe 1,rain-gauge,home-farm,orchard\r\n\r\n,,,,\r\n".encode()
    )
    out, _ = run(path)
    assert "Imported 1 device with 1 sensor." in out
    assert Device.objects.get().uid == "probe-1"


# --- bad rows -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("Nowhere Farm,,p-1,Probe,soil-probe", "unknown farm 'Nowhere Farm'"),
        ("home-farm,Back Forty,p-1,Probe,soil-probe", "unknown field 'Back Forty' on farm 'home-farm'"),
        ("home-farm,Hill Top,p-1,Probe,soil-probe", "field 'Hill Top' is on farm 'Hill Farm', not on farm 'Home Farm'"),
        ("home-farm,,p-1,Probe,laser-probe", "unknown kind 'laser-probe' (known kinds: air-th, battery-monitor"),
        ("home-farm,,p/1,Probe,soil-probe", "bad uid 'p/1': A device uid may use only"),
        ("home-farm,,p 1,Probe,soil-probe", "found a space"),
        ("home-farm,,p+1,Probe,soil-probe", "(an MQTT wildcard)"),
        ("home-farm,,p#1,Probe,soil-probe", "(an MQTT wildcard)"),
        ("home-farm,,sonde-é,Probe,soil-probe", "'é' (not ASCII)"),
        ("home-farm,,taken-1,Probe,soil-probe", "uid 'taken-1' is already registered (device 'Old' on farm"),
        ("home-farm,,A84041000181C5B0,Probe,soil-probe", "uid 'a84041000181c5b0' is already registered"),
        ("home-farm,,p-1,,soil-probe", "empty name"),
        ("home-farm,,p-1,Probe,", "empty kind"),
        (",,p-1,Probe,soil-probe", "empty farm"),
        ("home-farm,,,Probe,soil-probe", "bad uid '': A device uid cannot be empty."),
        ("home-farm,,p-1," + "n" * 121 + ",soil-probe", "name is longer than 120 characters"),
        ("home-farm,,p-1,Probe", "fewer values than the header (missing column(s) kind)"),
        ("home-farm,,p-1,Probe, with comma,soil-probe", "more values than the header"),
    ],
)
def test_it_reports_a_bad_row_with_its_line_number_and_reason(tmp_path, home_farm, row, reason):
    FieldFactory.create(farm=FarmFactory.create(name="Hill Farm"), name="Hill Top")
    DeviceFactory.create(uid="taken-1", name="Old")
    DeviceFactory.create(uid="a84041000181c5b0")
    before = Device.objects.count()
    path = write_csv(tmp_path, "home-farm,orchard,good-1,Good,soil-probe\n" + row + "\n")
    message, errors = run_failing(path)
    assert message == f"1 bad row in {path}; nothing was imported."
    assert len(errors) == 1
    assert errors[0].startswith("line 3: ")
    assert reason in errors[0]
    assert Device.objects.count() == before


def test_it_reports_every_bad_row_and_a_duplicate_uid_with_both_lines(tmp_path, home_farm):
    path = write_csv(
        tmp_path,
        "home-farm,,probe-1,Probe 1,soil-probe\n"
        "home-farm,,probe-2,Probe 2,soil-probe\n"
        "home-farm,,probe-1,Probe 1 again,soil-probe\n"
        "home-farm,,Probe/3,,nope\n",
    )
    message, errors = run_failing(path)
    assert message.startswith("2 bad rows in ")
    assert errors[0] == "line 4: duplicate uid 'probe-1' (already on line 2)"
    assert [e.split(":")[0] for e in errors[1:]] == ["line 5", "line 5", "line 5"]
    assert "empty name" in errors[2]
    assert "unknown kind 'nope'" in errors[3]
    assert not Device.objects.exists()


def test_a_farm_name_shared_by_two_farms_asks_for_the_slug(tmp_path):
    FarmFactory.create(name="Glebe Farm", slug="glebe-north")
    FarmFactory.create(name="Glebe Farm", slug="glebe-south")
    _, errors = run_failing(write_csv(tmp_path, "Glebe Farm,,p-1,Probe,soil-probe\n"))
    assert errors == ["line 2: farm name 'Glebe Farm' matches 2 farms; use its slug (glebe-north, glebe-south)"]


def test_one_bad_row_means_nothing_is_written(tmp_path, home_farm):
    good = "".join(f"home-farm,orchard,probe-{i},Probe {i},soil-probe\n" for i in range(50))
    path = write_csv(tmp_path, good + "home-farm,orchard,probe-x,Probe X,no-such-kind\n")
    _, errors = run_failing(path, "--create-missing")
    assert errors == [
        "line 52: unknown kind 'no-such-kind' (known kinds: air-th, battery-monitor, rain-gauge, soil-probe, "
        "water-level, weather-station)"
    ]
    assert not Device.objects.exists()
    assert not Sensor.objects.exists()


def test_a_uid_registered_while_the_file_was_checked_rolls_everything_back(tmp_path):
    body = "New Farm,New Field,race-1,Race 1,rain-gauge\nNew Farm,New Field,race-2,Race 2,rain-gauge\n"
    rows, _ = read_rows(io.StringIO(HEADER + body))
    plan = plan_import(rows, load_directory(uids=["race-1", "race-2"]), create_missing=True)
    assert not plan.errors
    DeviceFactory.create(uid="race-2")
    with pytest.raises(IntegrityError):
        services.devices_import(plan=plan)
    assert not Farm.objects.filter(name="New Farm").exists()
    assert not Device.objects.filter(uid="race-1").exists()


# --- file-level problems -------------------------------------------------------------------------------


def test_a_missing_column_in_the_header_is_reported_on_line_1(tmp_path):
    path = write_csv(tmp_path, "home-farm,p-1,Probe,soil-probe\n", header="farm,uid,name,kind\n")
    message, _ = run_failing(path)
    assert message.endswith(
        "line 1: missing column(s) field; the first line must be a header naming "
        "farm,field,uid,name,kind (in any order)"
    )


def test_a_file_without_a_header_is_refused(tmp_path, home_farm):
    path = write_csv(tmp_path, "", header="home-farm,orchard,p-1,Probe,soil-probe\n")
    message, _ = run_failing(path)
    assert "missing column(s) farm, field, uid, name, kind" in message
    assert not Device.objects.exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "the file is empty"), (b"farm,field,uid,name,kind\nFerme \xe9t\xe9,,p-1,P,soil-probe\n", "not UTF-8")],
)
def test_an_empty_or_non_utf8_file_is_refused(tmp_path, content, reason):
    path = tmp_path / "devices.csv"
    path.write_bytes(content)
    message, _ = run_failing(path)
    assert reason in message


def test_a_missing_file_is_refused(tmp_path):
    message, _ = run_failing(tmp_path / "nope.csv")
    assert message.endswith("nope.csv: no such file")


# --- dry run and --create-missing ----------------------------------------------------------------------------


def test_a_dry_run_reports_and_writes_nothing(tmp_path, home_farm):
    path = write_csv(
        tmp_path,
        "home-farm,orchard,probe-1,Probe 1,soil-probe\nNew Farm,Top Field,probe-2,Probe 2,water-level\n",
    )
    out, _ = run(path, "--dry-run", "--create-missing")
    assert out.splitlines() == [
        "new farm 'New Farm' (slug new-farm)",
        "new field 'Top Field' (slug top-field) on farm new-farm",
        "Dry run: would import 2 devices with 4 sensors, creating 1 farm and 1 field. Nothing was written.",
    ]
    assert not Device.objects.exists()
    assert not Farm.objects.filter(slug="new-farm").exists()


def test_a_dry_run_still_reports_bad_rows(tmp_path, home_farm):
    _, errors = run_failing(write_csv(tmp_path, "home-farm,,bad uid,Probe,soil-probe\n"), "--dry-run")
    assert errors[0].startswith("line 2: bad uid 'bad uid'")


def test_create_missing_creates_farms_and_fields_once(tmp_path, home_farm, settings):
    settings.TIME_ZONE = "Europe/Dublin"
    path = write_csv(
        tmp_path,
        "Hill Farm,Top Field,hill-1,Hill 1,rain-gauge\n"
        "hill farm,top field,hill-2,Hill 2,rain-gauge\n"
        "hill-farm,Bottom Field,hill-3,Hill 3,rain-gauge\n"
        "home-farm,Walled Garden,home-1,Home 1,air-th\n",
    )
    out, _ = run(path, "--create-missing")
    assert out.splitlines()[-1] == "Imported 4 devices with 5 sensors, creating 1 farm and 3 fields."
    hill = Farm.objects.get(slug="hill-farm")
    assert (hill.name, hill.time_zone) == ("Hill Farm", "Europe/Dublin")
    assert sorted(hill.fields.values_list("slug", flat=True)) == ["bottom-field", "top-field"]
    assert Device.objects.get(uid="hill-2").field == Field.objects.get(farm=hill, slug="top-field")
    assert Device.objects.get(uid="home-1").field == Field.objects.get(farm=home_farm, slug="walled-garden")


def test_without_create_missing_a_new_farm_is_an_error(tmp_path):
    _, errors = run_failing(write_csv(tmp_path, "Hill Farm,Top Field,hill-1,Hill 1,rain-gauge\n"))
    assert errors == ["line 2: unknown farm 'Hill Farm' (no farm has this slug or name; --create-missing creates it)"]
    assert not Farm.objects.exists()


def test_create_missing_refuses_a_farm_whose_slug_is_taken_by_another_name(tmp_path):
    FarmFactory.create(name="Northern Estate", slug="north-farm")
    _, errors = run_failing(write_csv(tmp_path, "North Farm,,n-1,N 1,rain-gauge\n"), "--create-missing")
    assert errors == [
        "line 2: cannot create farm 'North Farm': its slug 'north-farm' is taken by farm 'Northern Estate'"
    ]


# --- large files ---------------------------------------------------------------------------------------


def test_a_large_file_is_imported_with_a_progress_bar(tmp_path, home_farm, capsys):
    kinds = ["soil-probe", "air-th", "rain-gauge", "water-level"]
    body = "".join(
        f"home-farm,{'orchard' if i % 2 else 'north-paddock'},probe-{i:05d},Probe {i},{kinds[i % 4]}\n"
        for i in range(3000)
    )
    out, _ = run(write_csv(tmp_path, body))
    assert out.splitlines()[-1] == "Imported 3000 devices with 5250 sensors."
    assert Device.objects.filter(farm=home_farm).count() == 3000
    assert Sensor.objects.count() == 750 * 3 + 750 * 2 + 750 + 750
    assert "3000/3000" in capsys.readouterr().err


def test_a_small_file_shows_no_progress_bar(tmp_path, home_farm, capsys):
    run(write_csv(tmp_path, "home-farm,,p-1,P 1,rain-gauge\n"))
    assert capsys.readouterr().err == ""


# --- --update ------------------------------------------------------------------------------------------


def test_reimporting_a_registered_uid_fails_and_names_update(tmp_path, home_farm):
    path = write_csv(tmp_path, "Home Farm,North Paddock,north-probe-1,North probe 1,soil-probe\n")
    run(path)
    message, errors = run_failing(path)
    assert "nothing was imported" in message
    assert errors == [
        "line 2: uid 'north-probe-1' is already registered (device 'North probe 1' on farm 'Home Farm'); "
        "--update changes registered devices"
    ]


def test_update_changes_registered_devices_and_creates_new_ones(tmp_path, home_farm):
    run(write_csv(tmp_path, "Home Farm,North Paddock,north-probe-1,North probe 1,soil-probe\n"))
    device = Device.objects.get(uid="north-probe-1")
    soil_keys = set(device.sensors.values_list("key", flat=True))

    path = write_csv(
        tmp_path,
        "Home Farm,Orchard,north-probe-1,Orchard air 1,air-th\n"
        "Home Farm,,yard-weather,Yard weather station,weather-station\n",
    )
    out, _ = run(path, "--update", "--dry-run")
    assert "would import 1 device with" in out
    assert "updating 1 registered device" in out
    assert Device.objects.get(uid="north-probe-1").name == "North probe 1", "a dry run writes nothing"

    out, _ = run(path, "--update")
    assert "updating 1 registered device" in out
    device.refresh_from_db()
    assert device.field is not None
    assert (device.name, device.field.slug, device.kind.slug) == ("Orchard air 1", "orchard", "air-th")
    keys = set(device.sensors.values_list("key", flat=True))
    # The new kind's metrics get sensors; the old ones (and their history) are kept.
    assert {"air_temperature", "air_humidity"} <= keys
    assert soil_keys <= keys
    assert Device.objects.filter(uid="yard-weather").exists()
