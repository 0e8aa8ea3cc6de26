"""Hourly and local-daily rollups of readings (sensors/history/rollups.py), and their share of the delete trigger.

Deleting sensors deletes their rollups in the same statement-level trigger that deletes
their readings (0006): rollups have no foreign key either, and outlive raw retention.
"""

import django.db.models.deletion
import sensors.models
from django.db import migrations, models


_TRIGGER = """
CREATE OR REPLACE FUNCTION sensors_sensor_delete_readings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Under READ COMMITTED this DELETE takes a fresh snapshot and so also removes readings an
    -- ingest batch committed while this transaction waited on its sensor lock. A REPEATABLE
    -- READ or SERIALIZABLE snapshot would miss them (the lock does not conflict the way an
    -- update would), leaving readings without a sensor: refuse rather than orphan.
    IF current_setting('transaction_isolation') <> 'read committed'
            AND EXISTS (SELECT 1 FROM deleted_sensors) THEN
        RAISE EXCEPTION 'delete sensors under READ COMMITTED (their readings go with a fresh snapshot)'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM sensors_reading r USING deleted_sensors o WHERE r.sensor_id = o.id;
    DELETE FROM sensors_rolluphour r USING deleted_sensors o WHERE r.sensor_id = o.id;
    DELETE FROM sensors_rollupday r USING deleted_sensors o WHERE r.sensor_id = o.id;
    RETURN NULL;
END
$$;
"""

_TRIGGER_BEFORE = """
CREATE OR REPLACE FUNCTION sensors_sensor_delete_readings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
            AND EXISTS (SELECT 1 FROM deleted_sensors) THEN
        RAISE EXCEPTION 'delete sensors under READ COMMITTED (their readings go with a fresh snapshot)'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM sensors_reading r USING deleted_sensors o WHERE r.sensor_id = o.id;
    RETURN NULL;
END
$$;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('sensors', '0010_reading_partitioned'),
    ]

    operations = [
        migrations.RunSQL(sql=_TRIGGER, reverse_sql=_TRIGGER_BEFORE),
        migrations.CreateModel(
            name='RollupDay',
            fields=[
                ('count', models.BigIntegerField()),
                ('sum', sensors.models.NumericField(decimal_places=0, max_digits=1000)),
                ('min', models.FloatField()),
                ('max', models.FloatField()),
                ('first_ts', models.DateTimeField()),
                ('first_value', models.FloatField()),
                ('last_ts', models.DateTimeField()),
                ('last_value', models.FloatField()),
                ('pk', models.CompositePrimaryKey('sensor_id', 'day', blank=True, editable=False, primary_key=True, serialize=False)),
                ('day', models.DateField()),
                ('sensor', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='sensors.sensor')),
            ],
            options={
                'abstract': False,
            },
        ),
        migrations.CreateModel(
            name='RollupHour',
            fields=[
                ('count', models.BigIntegerField()),
                ('sum', sensors.models.NumericField(decimal_places=0, max_digits=1000)),
                ('min', models.FloatField()),
                ('max', models.FloatField()),
                ('first_ts', models.DateTimeField()),
                ('first_value', models.FloatField()),
                ('last_ts', models.DateTimeField()),
                ('last_value', models.FloatField()),
                ('pk', models.CompositePrimaryKey('sensor_id', 'bucket', blank=True, editable=False, primary_key=True, serialize=False)),
                ('bucket', models.DateTimeField()),
                ('sensor', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='sensors.sensor')),
            ],
            options={
                'abstract': False,
            },
        ),
    ]
