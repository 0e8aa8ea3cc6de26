"""Leave room on device pages so that ingest's per-batch device updates stay on their page.

Every ingest batch updates each of its devices (last seen, status, link health; see
sensors/ingest/store.py). On full pages (the default fillfactor 100) each update writes its
new row version to another page and a new entry into every index of the table (six on
sensors_device); with room on the page PostgreSQL makes it a HOT update, without touching
the indexes. The table is small (a row per device), so half-empty pages cost little.
Existing rows move to roomier pages as they are updated (or at once with
``VACUUM FULL sensors_device``).
"""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sensors", "0006_reading_delete_trigger")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE sensors_device SET (fillfactor = 50);",
            reverse_sql="ALTER TABLE sensors_device RESET (fillfactor);",
        )
    ]
