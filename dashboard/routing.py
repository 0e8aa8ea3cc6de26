"""WebSocket routes, mounted by ``farm.asgi`` behind the Origin check and the session auth stack."""

from django.urls import URLPattern, URLResolver, path

from .consumers import FarmConsumer
from .inbox_consumer import InboxConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/farms/<int:farm_id>/", FarmConsumer.as_asgi(), name="farm-live"),
    path("ws/inbox/", InboxConsumer.as_asgi(), name="inbox-live"),
]
