"""The alerts pages, under each farm."""

from django.urls import URLPattern, URLResolver, path

from alerts import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("farms/<slug:farm_ref>/alerts/", views.alerts_page, name="alerts-page"),
    path("farms/<slug:farm_ref>/alerts/<int:episode_id>/", views.episode_page, name="alerts-episode"),
    path("farms/<slug:farm_ref>/alerts/<int:episode_id>/acknowledge", views.acknowledge, name="alerts-acknowledge"),
    path("farms/<slug:farm_ref>/alerts/rules/", views.rules_page, name="alerts-rules"),
    path("farms/<slug:farm_ref>/alerts/rules/new/", views.rule_new, name="alerts-rule-new"),
    path("farms/<slug:farm_ref>/alerts/rules/backtest", views.rule_backtest, name="alerts-rule-backtest"),
    path("farms/<slug:farm_ref>/alerts/rules/<int:rule_id>/", views.rule_edit, name="alerts-rule-edit"),
    path("farms/<slug:farm_ref>/alerts/rules/<int:rule_id>/delete", views.rule_delete, name="alerts-rule-delete"),
]
