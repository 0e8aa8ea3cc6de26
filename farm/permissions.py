"""Who may do what on a farm: the one place that decides, for views, forms, JSON and sockets.

The decision is a declared table, ``MINIMUM_ROLE``: each action names the least role that
may take it (viewer < manager < owner). Active staff may take every action (they run the
installation, mostly through the admin). A new feature adds a member to ``Action`` and a row
to the table, then checks it with one of:

- ``can(user, farm, Action.X)`` anywhere (services that need it, templates via ``abilities``);
- ``@farm_action_required(Action.X)`` on a function view taking ``farm_ref`` (it passes
  ``farm`` instead), or ``FarmActionMixin`` with ``action = Action.X`` on a class view;
- ``await socket_can(user, farm_id, Action.X)`` in a consumer before acting on a message;
- ``user.has_perm(Action.X, farm)`` through Django's own API (``FarmRoleBackend``).

Built on Django's own permission API rather than django-rules: the whole policy is "role at
least R", a table a test can compare cell by cell, and Django's ``has_perm(perm, obj)``
already is the interface admin, templates and third-party code speak; rules' predicate
combinators would add a dependency without adding a decision we need.

A farm the user may not see answers 404, like one that does not exist (farm ids cannot be
probed); a farm they may see but not act on answers 403.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from farm.models import Farm, Membership, Role

AnyUser = AbstractBaseUser | AnonymousUser


class Action(StrEnum):
    """Things a person may do on a farm. Values are Django permission names (app_label.codename)."""

    VIEW_FARM = "farm.view_farm"  # dashboard, history, alerts, summaries, the team list
    EXPORT_DATA = "farm.export_data"
    ACKNOWLEDGE_ALERTS = "farm.acknowledge_alerts"
    EDIT_RULES = "farm.edit_rules"  # alert rules
    EDIT_DEVICES = "farm.edit_devices"  # device names
    EDIT_FIELDS = "farm.edit_fields"  # fields and their crops
    MANAGE_TEAM = "farm.manage_team"  # invite, change roles, remove, hand over ownership
    EDIT_FARM = "farm.edit_farm"  # the farm's name, location, time zone


RANK: Mapping[str, int] = {Role.VIEWER: 1, Role.MANAGER: 2, Role.OWNER: 3}

MINIMUM_ROLE: Mapping[Action, Role] = {
    Action.VIEW_FARM: Role.VIEWER,
    Action.EXPORT_DATA: Role.VIEWER,
    Action.ACKNOWLEDGE_ALERTS: Role.MANAGER,
    Action.EDIT_RULES: Role.MANAGER,
    Action.EDIT_DEVICES: Role.MANAGER,
    Action.EDIT_FIELDS: Role.MANAGER,
    Action.MANAGE_TEAM: Role.OWNER,
    Action.EDIT_FARM: Role.OWNER,
}


def is_staff(user: AnyUser) -> bool:
    return bool(user.is_active and (getattr(user, "is_staff", False) or getattr(user, "is_superuser", False)))


def role_of(user: AnyUser, farm_id: int) -> str | None:
    """The user's role on the farm, or None; remembered on the user object for the request."""
    if not user.is_authenticated or not user.is_active:
        return None
    cache: dict[int, str | None] = user.__dict__.setdefault("_farm_roles", {})
    if farm_id not in cache:
        cache[farm_id] = (
            Membership.objects.filter(farm_id=farm_id, user_id=user.pk).values_list("role", flat=True).first()
        )
    return cache[farm_id]


def role_allows(role: str | None, action: Action) -> bool:
    return role is not None and RANK[role] >= RANK[MINIMUM_ROLE[action]]


def can(user: AnyUser, farm: Farm | int, action: Action) -> bool:
    """Whether ``user`` may take ``action`` on ``farm`` (a farm or its id)."""
    if is_staff(user):
        return True
    return role_allows(role_of(user, farm if isinstance(farm, int) else farm.pk), action)


def abilities(user: AnyUser, farm: Farm) -> dict[str, bool]:
    """Every action by name, for templates: ``{% if can.MANAGE_TEAM %}``."""
    return {action.name: can(user, farm, action) for action in Action}


def farm_for(user: AnyUser, ref: str, action: Action) -> Farm:
    """The farm named by slug (or id) if ``user`` may take ``action`` on it.

    404 when they may not even see it (or it does not exist), 403 when they may see it only.
    """
    farm = Farm.objects.filter(slug=ref).first()
    if farm is None and ref.isdigit():  # a slug wins, so a farm slugged "2024" stays reachable
        farm = Farm.objects.filter(pk=int(ref)).first()
    if farm is None or not can(user, farm, Action.VIEW_FARM):
        raise Http404("No such farm.")
    if not can(user, farm, action):
        raise PermissionDenied(f"Your role on {farm.name} does not allow this.")
    return farm


V = TypeVar("V", bound=Callable[..., HttpResponse])


def farm_action_required(action: Action) -> Callable[[V], V]:
    """For a view ``view(request, farm_ref, ...)``: sign-in, then ``farm_for``; calls ``view(request, farm, ...)``."""

    def decorate(view: V) -> V:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, farm_ref: str, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            return view(request, farm_for(request.user, farm_ref, action), *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class FarmActionMixin:
    """For class views routed with ``farm_ref``: sets ``self.farm`` once ``action`` is allowed."""

    action: Action
    farm: Farm
    request: HttpRequest

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        self.farm = farm_for(request.user, kwargs.pop("farm_ref"), self.action)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


def signed_in(request: HttpRequest) -> User:
    """The request's user, for views behind a sign-in check (typed as a real user)."""
    user = request.user
    if isinstance(user, AnonymousUser):
        raise PermissionDenied("Sign in first.")
    return user


def _socket_can(user: AnyUser, farm_id: int, action: Action) -> bool:
    user.__dict__.pop("_farm_roles", None)  # a socket lives for hours: never trust an old answer
    return can(user, farm_id, action)


async def socket_can(user: AnyUser, farm_id: int, action: Action) -> bool:
    """For consumers: check ``action`` afresh before acting on a client's message."""
    return bool(await database_sync_to_async(_socket_can)(user, farm_id, action))


class FarmRoleBackend:
    """Django's permission API over the table: ``user.has_perm(Action.EDIT_RULES, farm)``.

    Authenticates nobody; answers only object permissions on a farm and leaves the rest to
    ModelBackend.
    """

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> None:
        return None

    def has_perm(self, user: AnyUser, perm: str, obj: object = None) -> bool:
        if not isinstance(obj, Farm) or perm not in Action._value2member_map_:
            return False
        return can(user, obj, Action(perm))


__all__ = [
    "MINIMUM_ROLE",
    "Action",
    "FarmActionMixin",
    "FarmRoleBackend",
    "abilities",
    "can",
    "farm_action_required",
    "farm_for",
    "role_allows",
    "role_of",
    "signed_in",
    "socket_can",
]
