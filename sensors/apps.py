from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _partitions_ahead(sender: AppConfig, **kwargs: Any) -> None:
    """Every ``migrate`` leaves the readings' partitions ready ahead of now (the beat task keeps them so)."""
    from django.utils import timezone

    from sensors.partitions import is_partitioned, reading_partitions_maintain

    if is_partitioned():
        reading_partitions_maintain(now=timezone.now())


class SensorsConfig(AppConfig):
    name = "sensors"
    verbose_name = "Devices and readings"

    def ready(self) -> None:
        from sensors.history.rollups import rollups_write
        from sensors.hooks import register_batch_writer

        register_batch_writer(rollups_write)
        post_migrate.connect(_partitions_ahead, sender=self, dispatch_uid="sensors-partitions-ahead")
