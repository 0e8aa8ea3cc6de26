"""Records when a member last visited a farm, for the team page (``FarmVisitMiddleware``).

Any page routed with a ``farm_ref`` (the dashboard, the team and settings pages, and what
comes later) counts as a visit once it answered 200. One UPDATE per member and farm every
``VISIT_EVERY`` at most: the cache's ``add`` lets only the first request through.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from farm.services import membership_visit_record

VISIT_EVERY_SECONDS = 300


class FarmVisitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = request.resolver_match
        if (
            response.status_code == 200
            and request.method == "GET"
            and match is not None
            and "farm_ref" in match.kwargs
            and request.user.is_authenticated
        ):
            ref = str(match.kwargs["farm_ref"])
            if cache.add(f"farm-visit:{request.user.pk}:{ref}", 1, VISIT_EVERY_SECONDS):
                membership_visit_record(user_id=request.user.pk, farm_ref=ref)
        return response
