"""Dashboard pages and their JSON endpoints."""

from django.urls import URLPattern, URLResolver, path

from . import views, views_devices

urlpatterns: list[URLPattern | URLResolver] = [
    path("farms/<slug:farm_ref>/", views.farm_dashboard, name="farm-dashboard"),
    path("farms/<slug:farm_ref>/sensors/<int:sensor_id>/series", views.sensor_series, name="farm-sensor-series"),
    path("farms/<slug:farm_ref>/sparklines", views.farm_sparklines, name="farm-sparklines"),
    path("farms/<slug:farm_ref>/devices/", views_devices.device_list, name="farm-devices"),
    path("farms/<slug:farm_ref>/devices/<int:device_id>/", views_devices.device_edit, name="farm-device-edit"),
]
