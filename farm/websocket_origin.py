"""The WebSocket Origin check: the page that opens a socket must come from this very site.

Channels' ``AllowedHostsOriginValidator`` compares host names only, so a page
on ``http://farm.example:8080`` (another service on the same host) or plain
``http://farm.example`` could open a socket to ``https://farm.example`` with
the user's cookie. This check is the one Django's CSRF middleware makes for a
POST: the Origin's scheme, host and port must equal the request's own
(``Host`` header, and the scheme of the connection, or of the TLS proxy's
``X-Forwarded-Proto`` where ``SECURE_PROXY_SSL_HEADER`` trusts it), the host
must be in ``ALLOWED_HOSTS``, or the Origin must be listed exactly in
``CSRF_TRUSTED_ORIGINS``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    values = [value for key, value in scope.get("headers", []) if key == name]
    # Two Origin or Host headers is no browser's doing: refuse rather than pick one.
    return values[0].decode("latin-1") if len(values) == 1 else None


def parse_origin(value: str) -> Origin | None:
    """``(scheme, host, port)`` of an ``http(s)://host[:port]`` origin, or None."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path or parts.query or parts.username:
        return None
    return parts.scheme, parts.hostname, port if port is not None else DEFAULT_PORTS[parts.scheme]


def _request_scheme(scope: dict[str, Any]) -> str:
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy is not None:
        header, secure_value = proxy
        name = header.removeprefix("HTTP_").lower().replace("_", "-").encode()
        forwarded = _header(scope, name)
        if forwarded is not None:
            return "https" if forwarded.split(",")[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def request_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin this socket was opened on, if its Host is one of ``ALLOWED_HOSTS``."""
    host = _header(scope, b"host")
    if host is None:
        return None
    domain, _port = split_domain_port(host.lower())
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's own HTTP host check
    if not domain or not validate_host(domain, allowed):
        return None
    return parse_origin(f"{_request_scheme(scope)}://{host}")


def origin_allowed(scope: dict[str, Any]) -> bool:
    origin_header = _header(scope, b"origin")
    origin = None if origin_header is None else parse_origin(origin_header)
    if origin is None:
        return False
    if origin == request_origin(scope):
        return True
    trusted = {parse_origin(value) for value in settings.CSRF_TRUSTED_ORIGINS if "*" not in value}
    return origin in trusted


class SameOriginValidator:
    """ASGI middleware: refuses at the handshake (HTTP 403) a socket opened from another origin."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator guards WebSocket connections only")
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
