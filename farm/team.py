"""Writes for a farm's team: change a role, remove a member, leave, hand over ownership.

Every write locks the farm's row first, so two owners demoting each other at the same moment
cannot both succeed and leave the farm without an owner. Every change is recorded in the
farm's log. Open dashboards of the person affected re-check their access after the commit
(dashboard/signals.py listens to Membership saves and deletes), so a removed member's sockets
close within seconds without this module knowing about sockets.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from farm.models import Farm, Membership, Role, TeamEventKind
from farm.services import team_event_record


class TeamError(ValidationError):
    """A team change that is not allowed (the message is shown to the person who tried)."""


def _name(user: User) -> str:
    return user.get_full_name() or user.get_username()


def _lock(farm: Farm) -> None:
    Farm.objects.select_for_update().filter(pk=farm.pk).values_list("pk", flat=True).get()


def _other_owners(membership: Membership) -> bool:
    return Membership.objects.filter(farm_id=membership.farm_id, role=Role.OWNER).exclude(pk=membership.pk).exists()


def _fresh(farm: Farm, membership_id: int) -> Membership:
    membership = Membership.objects.select_related("user").filter(farm=farm, pk=membership_id).first()
    if membership is None:
        raise TeamError("That person is no longer a member of this farm.")
    return membership


@transaction.atomic
def membership_role_change(*, farm: Farm, membership_id: int, role: Role, actor: User) -> Membership:
    _lock(farm)
    membership = _fresh(farm, membership_id)
    old = Role(membership.role)
    if old == role:
        return membership
    if old == Role.OWNER and not _other_owners(membership):
        raise TeamError("A farm needs at least one owner: make someone else owner first.")
    membership.role = role
    membership.save(update_fields=["role"])
    team_event_record(
        farm=farm, actor=actor, kind=TeamEventKind.ROLE_CHANGED, subject=_name(membership.user),
        detail=f"{old.label} → {role.label}",
    )  # fmt: skip
    return membership


@transaction.atomic
def membership_remove(*, farm: Farm, membership_id: int, actor: User) -> None:
    """Remove a member (or, when ``actor`` is that member, leave the farm)."""
    _lock(farm)
    membership = _fresh(farm, membership_id)
    if membership.role == Role.OWNER and not _other_owners(membership):
        raise TeamError("A farm needs at least one owner: hand over ownership before leaving.")
    membership.delete()
    leaving = membership.user_id == actor.pk
    kind = TeamEventKind.LEFT if leaving else TeamEventKind.REMOVED
    team_event_record(farm=farm, actor=actor, kind=kind, subject="" if leaving else _name(membership.user))


@transaction.atomic
def ownership_transfer(*, farm: Farm, to_membership_id: int, actor: User) -> Membership:
    """Make another member the owner; the owner handing over becomes a manager."""
    _lock(farm)
    target = _fresh(farm, to_membership_id)
    mine = Membership.objects.filter(farm=farm, user_id=actor.pk, role=Role.OWNER).first()
    if target.user_id == actor.pk:
        raise TeamError("You are already an owner.")
    target.role = Role.OWNER
    target.save(update_fields=["role"])
    if mine is not None:  # staff handing over a farm they do not own keep no role on it
        mine.role = Role.MANAGER
        mine.save(update_fields=["role"])
    team_event_record(farm=farm, actor=actor, kind=TeamEventKind.OWNERSHIP, subject=_name(target.user))
    return target
