"""Ship device kinds for common farm sensors.

The slugs and metric keys are a contract: the demo seed, the simulator and
device payloads use them. The data is frozen here on purpose (a migration must
not import code that may change later). Re-running is harmless: kinds are
matched by slug and metrics by key, and existing rows are left as an admin may
have tuned them.
"""

from django.db import migrations

# (key, label, unit, plausible min, plausible max)
AIR_TEMPERATURE = ("air_temperature", "Air temperature", "°C", -40.0, 60.0)
AIR_HUMIDITY = ("air_humidity", "Air humidity", "%", 0.0, 100.0)
RAIN = ("rain", "Rainfall", "mm", 0.0, 200.0)

KINDS = [
    {
        "slug": "soil-probe",
        "name": "Soil probe",
        "description": "Buried probe measuring volumetric soil moisture, soil temperature and electrical conductivity.",
        "expected_interval": 900,
        "metrics": [
            ("soil_moisture", "Soil moisture", "%", 0.0, 100.0),
            ("soil_temperature", "Soil temperature", "°C", -30.0, 70.0),
            ("soil_ec", "Soil EC", "dS/m", 0.0, 20.0),
        ],
    },
    {
        "slug": "air-th",
        "name": "Air temperature & humidity",
        "description": "Screened air temperature and relative humidity sensor.",
        "expected_interval": 600,
        "metrics": [AIR_TEMPERATURE, AIR_HUMIDITY],
    },
    {
        "slug": "rain-gauge",
        "name": "Rain gauge",
        "description": "Tipping-bucket rain gauge; each reading is the rain since the previous one.",
        "expected_interval": 900,
        "metrics": [RAIN],
    },
    {
        "slug": "weather-station",
        "name": "Weather station",
        "description": "All-in-one station: air, pressure, wind, rain and solar radiation.",
        "expected_interval": 300,
        "metrics": [
            AIR_TEMPERATURE,
            AIR_HUMIDITY,
            ("pressure", "Air pressure", "hPa", 870.0, 1085.0),
            ("wind_speed", "Wind speed", "m/s", 0.0, 75.0),
            ("wind_direction", "Wind direction", "°", 0.0, 360.0),
            RAIN,
            ("solar_radiation", "Solar radiation", "W/m²", 0.0, 1500.0),
        ],
    },
    {
        "slug": "water-level",
        "name": "Water level",
        "description": "Level of a tank, trough, pond or ditch, measured from its bottom.",
        "expected_interval": 900,
        "metrics": [("water_level", "Water level", "m", 0.0, 100.0)],
    },
    {
        "slug": "battery-monitor",
        "name": "Battery monitor",
        "description": "State of charge of a battery (e.g. a solar-powered gateway or fence energiser).",
        "expected_interval": 3600,
        "metrics": [("battery", "Battery", "%", 0.0, 100.0)],
    },
]


def install_kinds(apps, schema_editor):
    DeviceKind = apps.get_model("sensors", "DeviceKind")
    MetricSpec = apps.get_model("sensors", "MetricSpec")
    for spec in KINDS:
        kind, _ = DeviceKind.objects.get_or_create(
            slug=spec["slug"],
            defaults={
                "name": spec["name"],
                "description": spec["description"],
                "expected_interval": spec["expected_interval"],
            },
        )
        for key, label, unit, low, high in spec["metrics"]:
            MetricSpec.objects.get_or_create(
                kind=kind, key=key, defaults={"label": label, "unit": unit, "min_value": low, "max_value": high}
            )


def remove_unused_kinds(apps, schema_editor):
    """Reverse: drop the shipped kinds no device uses (kinds are PROTECTed by devices)."""
    DeviceKind = apps.get_model("sensors", "DeviceKind")
    slugs = [spec["slug"] for spec in KINDS]
    ids = list(DeviceKind.objects.filter(slug__in=slugs, devices__isnull=True).values_list("id", flat=True))
    # Plain SQL: the deletion collector trips over historical models of related apps.
    schema_editor.execute("DELETE FROM sensors_metricspec WHERE kind_id = ANY(%s)", [ids])
    schema_editor.execute("DELETE FROM sensors_devicekind WHERE id = ANY(%s)", [ids])


class Migration(migrations.Migration):
    dependencies = [("sensors", "0003_device_field_in_farm_and_checks")]

    operations = [migrations.RunPython(install_kinds, remove_unused_kinds)]
