"""Login, logout, the farm list and the health check. Views only translate HTTP to selectors."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from farm.health import registered_checks, run_checks
from farm.selectors import farm_list_for, farm_totals, user_sees_all_farms


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """POST-only (Django 5); says goodbye on the login page it redirects to."""

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        was_signed_in = request.user.is_authenticated
        response = super().post(request, *args, **kwargs)
        if was_signed_in:
            messages.success(request, "You are signed out.")
        return response


@login_required
@require_safe
def farm_list(request: HttpRequest) -> HttpResponse:
    farms = list(farm_list_for(request.user))
    context = {"farms": farms, "totals": farm_totals(farms), "sees_all": user_sees_all_farms(request.user)}
    return render(request, "farm/farm_list.html", context)


@never_cache
@require_safe
async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every required dependency answers, 503 with the failing check's error otherwise.

    A failing check that is not required (``broker_drops``) leaves the answer 200 and is
    named in ``warnings``.

    Touches no session, user or cache, so it is cheap to poll and says nothing about visitors.
    """
    healthy, checks = await run_checks()
    body: dict[str, object] = {"status": "ok" if healthy else "fail", "checks": checks}
    # Failing checks that do not fail the answer (required=False), for monitors to alert on.
    required = {check.name for check in registered_checks() if check.required}
    if warnings := sorted(name for name, result in checks.items() if not result["ok"] and name not in required):
        body["warnings"] = warnings
    return JsonResponse(body, status=200 if healthy else 503)
