"""Who may do what with a farm's alerts: the one place that decides.

Viewers see alerts and rules; managers and owners also create, edit, snooze and
acknowledge; staff may do everything on every farm. A farm the user is no member of
looks like a farm that does not exist (404), as on the dashboard. This module is meant
to fold into the farm-wide permission module once the team issue adds it.
"""

from __future__ import annotations

from enum import IntEnum

from django.core.exceptions import PermissionDenied
from django.http import Http404

from farm.models import Farm, Membership, Role
from farm.selectors import AnyUser, user_sees_all_farms


class Access(IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2


_BY_ROLE = {Role.VIEWER: Access.READ, Role.MANAGER: Access.WRITE, Role.OWNER: Access.WRITE}


def alert_access(user: AnyUser, farm: Farm) -> Access:
    """What ``user`` may do with ``farm``'s alerts and rules."""
    if not user.is_authenticated or not user.is_active:
        return Access.NONE
    if user_sees_all_farms(user):
        return Access.WRITE
    role = Membership.objects.filter(farm=farm, user_id=user.pk).values_list("role", flat=True).first()
    return _BY_ROLE.get(role, Access.NONE) if role else Access.NONE  # type: ignore[call-overload]


def farm_for_alerts(user: AnyUser, ref: str, *, write: bool = False) -> tuple[Farm, Access]:
    """The farm named by slug if ``user`` may see its alerts (else 404); 403 if ``write`` is asked and not allowed."""
    farm = Farm.objects.filter(slug=ref).first()
    access = alert_access(user, farm) if farm is not None else Access.NONE
    if farm is None or access is Access.NONE:
        raise Http404("No such farm.")
    if write and access < Access.WRITE:
        raise PermissionDenied("Only the farm's managers and owners may change its alerts.")
    return farm, access
