"""Top-level URL configuration."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("farm.urls_pages")),
    path("", include("dashboard.urls")),
    path("", include("alerts.urls")),
    path("", include("history.urls")),
    path("", include("notifications.urls")),
]
