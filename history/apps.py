from django.apps import AppConfig


class HistoryConfig(AppConfig):
    """The history page, daily farm summaries and CSV export: reads only, through sensors.history."""

    name = "history"
    verbose_name = "History"
