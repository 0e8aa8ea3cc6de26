"""Room on every page of alert states for HOT updates.

Every ingest batch rewrites the states of the sensors it touched (their newest reading, for
the late-reading rule), changing no indexed column. With full pages each new row version
lands on another page and goes into all six indexes; with half-empty pages PostgreSQL updates
in place (heap-only tuples) and the indexes are left alone (bench/alerts_bench.py).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE alerts_alertstate SET (fillfactor = 50)",
            reverse_sql="ALTER TABLE alerts_alertstate RESET (fillfactor)",
        )
    ]
