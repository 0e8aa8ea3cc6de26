from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        # The seam (docs/architecture.md §1): sensors never imports dashboard; the live
        # fan-out is a best-effort after-commit notifier (browsers refetch on a gap).
        from alerts.signals import register_alert_listener
        from notifications.inbox_signals import register_inbox_listener
        from sensors.hooks import register_batch_notifier

        from . import live, signals  # noqa: F401 - connects the revocation receivers

        register_batch_notifier(live.farm_updates_publish)
        register_alert_listener(live.farm_alerts_publish)
        register_inbox_listener(live.inbox_changed_publish)
