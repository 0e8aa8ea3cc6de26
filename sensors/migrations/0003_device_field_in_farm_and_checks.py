"""Database checks for devices and sensors, and the field-in-farm rule as a foreign key.

A device's field must belong to the device's farm. Django cannot declare a
composite foreign key, so it is written in SQL: (field_id, farm_id) references
farm_field (id, farm_id). MATCH SIMPLE lets a device have no field. Moving a
field to another farm carries its devices along (ON UPDATE CASCADE); Django's
SET_NULL still clears field_id before a field is deleted.
"""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('farm', '0002_field_unique_id_farm'),
        ('sensors', '0002_reading_sensor_fk_cascade'),
    ]

    operations = [
        migrations.AlterField(
            model_name='device',
            name='expected_interval',
            field=models.PositiveIntegerField(blank=True, help_text="Leave empty to use the kind's interval.", null=True, validators=[django.core.validators.MinValueValidator(1)], verbose_name='expected interval (s)'),
        ),
        migrations.AddConstraint(
            model_name='device',
            constraint=models.CheckConstraint(condition=models.Q(('expected_interval__isnull', True), ('expected_interval__gte', 1), _connector='OR'), name='device_interval_positive'),
        ),
        migrations.AddConstraint(
            model_name='metricspec',
            constraint=models.CheckConstraint(condition=models.Q(('key__regex', '^[a-z][a-z0-9_]{0,63}$')), name='metricspec_key_format'),
        ),
        migrations.AddConstraint(
            model_name='sensor',
            constraint=models.CheckConstraint(condition=models.Q(('key__regex', '^[a-z][a-z0-9_]{0,63}$')), name='sensor_key_format'),
        ),
        migrations.AddConstraint(
            model_name='sensor',
            constraint=models.CheckConstraint(condition=models.Q(('min_value__isnull', True), ('max_value__isnull', True), ('min_value__lte', models.F('max_value')), _connector='OR'), name='sensor_min_le_max'),
        ),
        migrations.RunSQL(
            sql=(
                "ALTER TABLE sensors_device ADD CONSTRAINT sensors_device_field_in_farm_fk "
                "FOREIGN KEY (field_id, farm_id) REFERENCES farm_field (id, farm_id) "
                "ON UPDATE CASCADE;"
            ),
            reverse_sql="ALTER TABLE sensors_device DROP CONSTRAINT sensors_device_field_in_farm_fk;",
        ),
    ]
