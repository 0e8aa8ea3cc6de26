"""Reads about farms: which farms a user may see, and the figures the farm list shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Case, Count, Exists, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce

from farm.models import Farm, Field, Invitation, Membership, Role, TeamEvent
from sensors.models import DeviceStatus

AnyUser = AbstractBaseUser | AnonymousUser


class FarmCardFigures(TypedDict):
    field_count: int
    device_count: int
    online_count: int
    offline_count: int
    never_seen_count: int
    disabled_count: int
    last_seen: datetime | None
    role: str | None


if TYPE_CHECKING:  # django_stubs_ext comes with the dev requirements only
    from typing import TypeAlias

    from django_stubs_ext import WithAnnotations

    FarmCard: TypeAlias = WithAnnotations[Farm, FarmCardFigures]


def user_sees_all_farms(user: AnyUser) -> bool:
    """Staff (and superusers, who can change anything in the admin anyway) see every farm."""
    return bool(user.is_active and (getattr(user, "is_staff", False) or getattr(user, "is_superuser", False)))


def farms_visible_to(user: AnyUser) -> QuerySet[Farm]:
    """The farms ``user`` may see: the ones they are a member of, or all of them for staff."""
    if not user.is_authenticated or not user.is_active:
        return Farm.objects.none()
    if user_sees_all_farms(user):
        return Farm.objects.all()
    # Exists rather than a join: a join on memberships would multiply rows for later aggregates.
    return Farm.objects.filter(Exists(Membership.objects.filter(farm=OuterRef("pk"), user_id=user.pk)))


def _field_count() -> Coalesce:
    fields = Field.objects.filter(farm=OuterRef("pk")).order_by().values("farm").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(fields, output_field=IntegerField()), Value(0))


def _enabled_devices(status: str | None = None) -> Count:
    condition = Q(devices__enabled=True)
    if status is not None:
        condition &= Q(devices__status=status)
    return Count("devices", filter=condition)


def farm_list_for(user: AnyUser) -> QuerySet[FarmCard]:
    """Visible farms with everything a farm card shows, in one query.

    Device figures count enabled devices only: a disabled device is one nobody
    expects to hear from, so it should not make a farm look half offline.
    Each farm carries ``field_count``, ``device_count``, ``online_count``,
    ``offline_count``, ``never_seen_count``, ``disabled_count``,
    ``last_seen`` (the newest report of its enabled devices) and ``role``
    (the user's membership role, ``None`` for staff who are not members).
    """
    member_id = 0 if isinstance(user, AnonymousUser) else user.pk  # anonymous sees no farm anyway
    role = Membership.objects.filter(farm=OuterRef("pk"), user_id=member_id).values("role")[:1]
    return (
        farms_visible_to(user)
        .annotate(
            field_count=_field_count(),
            device_count=_enabled_devices(),
            online_count=_enabled_devices(DeviceStatus.ONLINE),
            offline_count=_enabled_devices(DeviceStatus.OFFLINE),
            never_seen_count=_enabled_devices(DeviceStatus.UNKNOWN),
            disabled_count=Count("devices", filter=Q(devices__enabled=False)),
            last_seen=Max("devices__last_seen", filter=Q(devices__enabled=True)),
            role=Subquery(role),
        )
        .order_by("name")
    )


@dataclass(frozen=True, slots=True)
class FarmTotals:
    farms: int
    devices: int
    online: int
    offline: int
    never_seen: int


_TOTALLED = ("device_count", "online_count", "offline_count", "never_seen_count")


def farm_totals(farms: Sequence[FarmCard]) -> FarmTotals:
    """Sums over farms already annotated by ``farm_list_for`` (no extra query)."""
    devices, online, offline, never_seen = (sum(getattr(farm, name) for farm in farms) for name in _TOTALLED)
    return FarmTotals(len(farms), devices, online, offline, never_seen)


def team_members(farm: Farm) -> QuerySet[Membership]:
    """The farm's members, owners first, then by name."""
    order = Case(When(role=Role.OWNER, then=Value(0)), When(role=Role.MANAGER, then=Value(1)), default=Value(2))
    return (
        Membership.objects.filter(farm=farm)
        .select_related("user")
        .order_by(order, "user__first_name", "user__last_name", "user__username")
    )


def open_invitations(farm: Farm) -> QuerySet[Invitation]:
    return Invitation.objects.filter(farm=farm, accepted_at=None, revoked_at=None).select_related("invited_by")


def team_events(farm: Farm, limit: int = 50) -> QuerySet[TeamEvent]:
    return TeamEvent.objects.filter(farm=farm).order_by("-at", "-id")[:limit]


def farm_fields_for_settings(farm: Farm) -> QuerySet[Field]:
    return Field.objects.filter(farm=farm).annotate(device_count=Count("devices")).order_by("name")
