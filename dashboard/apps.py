from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        # The seam (DESIGN.md §1): sensors never imports dashboard; dashboard
        # registers itself with the ingest worker's after-commit hooks.
        from sensors.hooks import register_batch_hook

        from . import live, signals  # noqa: F401 - connects the revocation receivers

        register_batch_hook(live.farm_updates_publish)
