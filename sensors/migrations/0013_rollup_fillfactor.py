"""Leave room on rollup pages so that folding a batch into its buckets is a HOT update.

Every ingest batch updates the hour and day rows it falls in (sensors/history/rollups.py):
under load, the live hour's and day's rows are updated by every batch. On full pages (the
default fillfactor 100) each update writes its row version to another page and a new entry
into the primary key, so a bucket updated a thousand times leaves a thousand index entries
for the next upsert to check (measured: 311 of 60,110 updates were HOT, and an upsert of
100 buckets read 2,500 buffers). With room on the page the update stays on it (HOT), and
pruning reclaims the old versions in place. Only rows written from now on get the room;
rows whose bucket is past are never updated again, so they need none.
"""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sensors", "0012_metric_ranges")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE sensors_rolluphour SET (fillfactor = 70); ALTER TABLE sensors_rollupday SET (fillfactor = 70);",
            reverse_sql="ALTER TABLE sensors_rolluphour RESET (fillfactor); ALTER TABLE sensors_rollupday RESET (fillfactor);",
        )
    ]
