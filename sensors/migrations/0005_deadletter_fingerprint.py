"""Dead letters deduplicated per message: fingerprint (unique), deliveries count, last received."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("sensors", "0004_shipped_device_kinds")]

    operations = [
        migrations.AddField(
            model_name="deadletter",
            name="fingerprint",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="deadletter",
            name="count",
            field=models.PositiveBigIntegerField(default=1, verbose_name="deliveries"),
        ),
        migrations.AddField(
            model_name="deadletter",
            name="last_received_at",
            field=models.DateTimeField(null=True, verbose_name="last received"),
        ),
        # Rows from before this migration were each one delivery.
        migrations.RunSQL(
            "UPDATE sensors_deadletter SET last_received_at = received_at", reverse_sql=migrations.RunSQL.noop
        ),
        migrations.AlterField(
            model_name="deadletter",
            name="last_received_at",
            field=models.DateTimeField(verbose_name="last received"),
        ),
        migrations.AlterField(
            model_name="deadletter",
            name="received_at",
            field=models.DateTimeField(verbose_name="first received"),
        ),
        migrations.AddConstraint(
            model_name="deadletter",
            constraint=models.UniqueConstraint(fields=("fingerprint",), name="deadletter_unique_fingerprint"),
        ),
        migrations.AddConstraint(
            model_name="deadletter",
            constraint=models.CheckConstraint(condition=models.Q(count__gte=1), name="deadletter_count_positive"),
        ),
    ]
