"""Dashboard pages (filled in by the live-dashboard work)."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
