"""The log of dirty rollup buckets (sensors/history/rollups.py): appended by ingest, drained by the refresher.

No key, no index, no foreign key: an ingest batch only appends to it (the cheapest insert
PostgreSQL has), and the refresher only ever empties it whole (``DELETE … RETURNING``), so
nothing looks a row up. A (device, hour) pair may appear many times; the refresher takes
each once, for each of the device's sensors. Not a Django model: nothing reads it through the ORM.

The sensors' delete trigger (0011) takes the refresher's advisory lock (rollups.ROLLUP_LOCK)
before deleting readings and rollups, so a refresh never writes back a deleted sensor's
rollups from a snapshot that still saw its readings.
"""

from __future__ import annotations

from importlib import import_module

from django.db import migrations


_0011 = import_module("sensors.migrations.0011_rollups")
_DELETE = "    DELETE FROM sensors_reading r USING deleted_sensors o WHERE r.sensor_id = o.id;"
assert _DELETE in _0011._TRIGGER
_TRIGGER = _0011._TRIGGER.replace(
    _DELETE,
    "    -- The rollup refresher's lock (sensors/history/rollups.py ROLLUP_LOCK): not while it recomputes.\n"
    f"    PERFORM pg_advisory_xact_lock(302028639308);\n{_DELETE}",
)


class Migration(migrations.Migration):
    dependencies = [("sensors", "0013_rollup_fillfactor")]

    operations = [
        migrations.RunSQL(
            "CREATE TABLE sensors_rollupdirty (device_id bigint NOT NULL, hour timestamptz NOT NULL)",
            reverse_sql="DROP TABLE sensors_rollupdirty",
        ),
        migrations.RunSQL(_TRIGGER, reverse_sql=_0011._TRIGGER),
    ]
