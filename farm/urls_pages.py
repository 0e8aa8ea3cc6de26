"""Login, logout, farm list and health check (filled in by the pages work)."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
