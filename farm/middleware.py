"""Response headers every page and JSON endpoint gets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from inspect import iscoroutinefunction
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control
from django.utils.decorators import sync_and_async_middleware


@sync_and_async_middleware
def private_no_store(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """``Cache-Control: private, no-store`` on everything Django renders.

    Pages and JSON behind the login carry one user's farms: a shared proxy must not keep
    them, nor the browser's disk cache once the user has signed out. The anonymous rest
    (login page, redirects, errors, /healthz) is per-request too, so the rule has no
    exceptions to get wrong. Static files are WhiteNoise's, answered above this middleware.
    Both flavours, so the async views (/healthz) keep running without a thread hop.
    """
    if iscoroutinefunction(get_response):
        async_get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = get_response

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            response = await async_get_response(request)
            patch_cache_control(response, private=True, no_store=True)
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        patch_cache_control(response, private=True, no_store=True)
        return response

    return middleware
