"""WebSocket routes; consumers are added by the live-dashboard work."""

from django.urls import URLPattern, URLResolver

websocket_urlpatterns: list[URLPattern | URLResolver] = []
