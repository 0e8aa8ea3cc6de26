from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Alerts (or anything else) hand work over by enqueueing outbox items with this topic.
        from alerts.panels import register_episode_panel
        from notifications import alerting
        from notifications.episode_log import delivery_log_panel
        from notifications.handler import TOPIC, handle_notification_event
        from outbox.handlers import register_outbox_handler

        register_outbox_handler(TOPIC, handle_notification_event)
        # Alert transitions (fired, reminders, escalations, resolved) are told to the people each rule names.
        register_outbox_handler(alerting.TOPIC, alerting.alert_transition_notify)
        # An alert's page shows who was told about it.
        register_episode_panel(delivery_log_panel)
