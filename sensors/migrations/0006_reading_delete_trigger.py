"""Replace readings' per-row foreign key with a delete trigger on sensors.

The deferred foreign key checked every reading at COMMIT: ~155–200 ms of a ~430 ms
store for a 50,000-reading ingest batch. The ingest store now checks once per batch
instead (it locks every sensor it writes readings for and fails if one is gone; see
sensors/ingest/store.py), and this statement-level trigger keeps the other half of
ON DELETE CASCADE: deleting sensors (or their device or farm) deletes their readings in
one statement, without loading them into Python.
"""

from __future__ import annotations

from django.db import migrations

_FORWARD = """
ALTER TABLE sensors_reading DROP CONSTRAINT sensors_reading_sensor_fk;

CREATE FUNCTION sensors_sensor_delete_readings() RETURNS trigger LANGUAGE plpgsql AS $$
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
    RETURN NULL;
END
$$;

CREATE TRIGGER sensors_sensor_delete_readings
    AFTER DELETE ON sensors_sensor
    REFERENCING OLD TABLE AS deleted_sensors
    FOR EACH STATEMENT EXECUTE FUNCTION sensors_sensor_delete_readings();
"""

# Exactly as 0002 declared it.
_REVERSE = """
DROP TRIGGER sensors_sensor_delete_readings ON sensors_sensor;
DROP FUNCTION sensors_sensor_delete_readings();

ALTER TABLE sensors_reading ADD CONSTRAINT sensors_reading_sensor_fk
    FOREIGN KEY (sensor_id) REFERENCES sensors_sensor (id) ON DELETE CASCADE
    DEFERRABLE INITIALLY DEFERRED;
"""


class Migration(migrations.Migration):
    dependencies = [("sensors", "0005_deadletter_fingerprint")]

    operations = [migrations.RunSQL(sql=_FORWARD, reverse_sql=_REVERSE)]
