"""The history pages, their data endpoint and the CSV export."""

from django.urls import URLPattern, URLResolver, path

from . import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("farms/<slug:farm_ref>/history/", views.history_page, name="history-page"),
    path("farms/<slug:farm_ref>/history/data", views.history_data, name="history-data"),
    path("farms/<slug:farm_ref>/history/summaries/", views.farm_summaries, name="history-summaries"),
    path("farms/<slug:farm_ref>/history/export.csv", views.export_csv, name="history-export"),
]
