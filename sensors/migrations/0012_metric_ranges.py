"""Plausible ranges that fit the metric: a tank's water level is not "0–100 m".

0004 shipped the water-level kind with 0–100 m, which let a level sensor's glitch (a
reading of 60 m from a 2 m pond) pass as plausible and made the range useless on the page.
A tank, trough, pond or ditch is at most a few metres deep: 0–10 m.

Only values still as shipped change: the kind's metric spec and the sensors created from it
(a sensor copies its spec's range when it is created). A range an admin has tuned is left
alone. Reversing restores the shipped range on the same terms.
"""

from django.db import migrations

# (kind slug, metric key, unit, range as shipped, range now)
RANGES = [
    ("water-level", "water_level", "m", (0.0, 100.0), (0.0, 10.0)),
]


def _apply(apps, *, forward: bool) -> None:
    MetricSpec = apps.get_model("sensors", "MetricSpec")
    Sensor = apps.get_model("sensors", "Sensor")
    for slug, key, unit, shipped, fixed in RANGES:
        old, new = (shipped, fixed) if forward else (fixed, shipped)
        untouched = {"key": key, "unit": unit, "min_value": old[0], "max_value": old[1]}
        MetricSpec.objects.filter(kind__slug=slug, **untouched).update(min_value=new[0], max_value=new[1])
        Sensor.objects.filter(device__kind__slug=slug, **untouched).update(min_value=new[0], max_value=new[1])


def ranges_fix(apps, schema_editor):
    _apply(apps, forward=True)


def ranges_restore(apps, schema_editor):
    _apply(apps, forward=False)


class Migration(migrations.Migration):
    # The migrations 0009–0011 of other branches come before this one once merged; its only
    # need is the kinds of 0004.
    dependencies = [("sensors", "0011_rollups")]

    operations = [migrations.RunPython(ranges_fix, ranges_restore)]
