"""Declare readings' foreign key in SQL with ON DELETE CASCADE.

Django's CASCADE would load every reading into Python before deleting a
sensor; the database does it in one statement instead.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sensors", "0001_initial")]

    operations = [
        migrations.RunSQL(
            sql=(
                "ALTER TABLE sensors_reading ADD CONSTRAINT sensors_reading_sensor_fk "
                "FOREIGN KEY (sensor_id) REFERENCES sensors_sensor (id) ON DELETE CASCADE "
                "DEFERRABLE INITIALLY DEFERRED;"
            ),
            reverse_sql="ALTER TABLE sensors_reading DROP CONSTRAINT sensors_reading_sensor_fk;",
        ),
    ]
