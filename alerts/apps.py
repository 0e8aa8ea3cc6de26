from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from alerts import signals, writer
        from sensors.hooks import register_batch_notifier, register_batch_writer

        register_batch_writer(writer.alerts_write_batch)
        register_batch_notifier(signals.alerts_batch_notify)
        # The outbox's "alerts.transition" messages are handled downstream (notifications).
