"""Skipped fields counted per (device, field); dead letters get a reason category.

A dead letter is now a message from which nothing was stored. The old per-message
"Stored N reading(s); skipped: …" notes are not dead letters by that rule and are
deleted here (their fields are counted as SkippedField rows from now on); the other
rows get a category from their reason's wording.
"""

import django.db.models.deletion
from django.db import migrations, models


CATEGORISE_DEAD_LETTERS = """
DELETE FROM sensors_deadletter WHERE reason LIKE 'Stored % reading(s); skipped: %';
UPDATE sensors_deadletter SET category = CASE
    WHEN reason LIKE 'Internal error%' THEN 'internal'
    WHEN reason LIKE '%topic%' THEN 'topic'
    WHEN reason LIKE 'Retained telemetry%' THEN 'retained'
    WHEN reason LIKE 'A status message%' THEN 'status'
    WHEN reason LIKE '%is disabled;%' THEN 'disabled'
    WHEN reason LIKE 'ts %' OR reason LIKE '%INGEST_MAX_FUTURE_SECONDS%' OR reason LIKE '%retention window%' THEN 'time'
    WHEN reason LIKE '%holds no readings%' OR reason LIKE '%holds no numeric values%' THEN 'no_values'
    ELSE 'payload'
END;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('sensors', '0008_sensor_latest_from_readings'),
    ]

    operations = [
        migrations.CreateModel(
            name='SkippedField',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('field', models.CharField(max_length=128)),
                ('category', models.CharField(choices=[('not_numeric', 'Not a number (text, null, list)'), ('not_finite', 'NaN or infinite'), ('too_large', 'Beyond the absolute bound'), ('invalid_key', 'Invalid metric key'), ('too_deep', 'Nested too deeply'), ('duplicate', 'Duplicate or ignored key'), ('bad_element', 'Bad element of an array'), ('metric_limit', 'Too many new metrics')], max_length=16)),
                ('reason', models.TextField()),
                ('example', models.TextField(blank=True, help_text='An excerpt of the latest skipped value.')),
                ('first_seen', models.DateTimeField()),
                ('last_seen', models.DateTimeField()),
                ('count', models.PositiveBigIntegerField(default=1)),
            ],
            options={
                'ordering': ['-last_seen'],
            },
        ),
        migrations.AddField(
            model_name='deadletter',
            name='category',
            field=models.CharField(choices=[('topic', 'Topic or device id'), ('payload', 'Not JSON, too large or malformed'), ('no_values', 'Nothing storable'), ('time', 'Timestamp out of window'), ('retained', 'Retained telemetry'), ('status', 'Bad status'), ('disabled', 'Disabled device'), ('metric_limit', 'Too many new metrics'), ('internal', 'Internal error')], default='internal', max_length=16),
        ),
        migrations.RunSQL(CATEGORISE_DEAD_LETTERS, migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name='deadletter',
            index=models.Index(fields=['last_received_at'], name='deadletter_last_received_idx'),
        ),
        migrations.AddConstraint(
            model_name='deadletter',
            constraint=models.CheckConstraint(condition=models.Q(('category__in', ['topic', 'payload', 'no_values', 'time', 'retained', 'status', 'disabled', 'metric_limit', 'internal'])), name='deadletter_category_valid'),
        ),
        migrations.AddField(
            model_name='skippedfield',
            name='device',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='skipped_fields', to='sensors.device'),
        ),
        migrations.AddIndex(
            model_name='skippedfield',
            index=models.Index(fields=['last_seen'], name='skippedfield_last_seen_idx'),
        ),
        migrations.AddConstraint(
            model_name='skippedfield',
            constraint=models.UniqueConstraint(fields=('device', 'field'), name='skippedfield_unique_device_field'),
        ),
        migrations.AddConstraint(
            model_name='skippedfield',
            constraint=models.CheckConstraint(condition=models.Q(('count__gte', 1)), name='skippedfield_count_positive'),
        ),
        migrations.AddConstraint(
            model_name='skippedfield',
            constraint=models.CheckConstraint(condition=models.Q(('category__in', ['not_numeric', 'not_finite', 'too_large', 'invalid_key', 'too_deep', 'duplicate', 'bad_element', 'metric_limit'])), name='skippedfield_category_valid'),
        ),
    ]
