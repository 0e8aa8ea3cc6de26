"""Writes for farms, their fields and memberships, and the demo login."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from farm.models import Farm, Field, Membership, Role, TeamEvent, TeamEventKind


def farm_create(
    *,
    name: str,
    slug: str = "",
    time_zone: str = "UTC",
    location: str = "",
    latitude: Decimal | None = None,
    longitude: Decimal | None = None,
) -> Farm:
    farm = Farm(
        name=name,
        slug=slug or slugify(name),
        time_zone=time_zone,
        location=location,
        latitude=latitude,
        longitude=longitude,
    )
    farm.full_clean()
    farm.save()
    return farm


def field_create(
    *,
    farm: Farm,
    name: str,
    slug: str = "",
    crop: str = "",
    area_ha: Decimal | None = None,
    season_start: date | None = None,
    gdd_base_c: Decimal = Decimal("10.0"),
) -> Field:
    field = Field(farm=farm, name=name, slug=slug or slugify(name), crop=crop, area_ha=area_ha)
    field.season_start, field.gdd_base_c = season_start, gdd_base_c
    field.full_clean()
    field.save()
    return field


def membership_set(*, farm: Farm, user: AbstractUser, role: Role) -> Membership:
    """Give ``user`` exactly ``role`` on ``farm`` (adding the membership if needed)."""
    membership, _ = Membership.objects.update_or_create(farm=farm, user=user, defaults={"role": role})
    return membership


@transaction.atomic
def superuser_ensure(*, username: str, password: str) -> AbstractUser:
    """An active superuser called ``username`` whose password is ``password``.

    Resetting the password on every call keeps the password printed by
    ``make run`` the one that works, even after someone changed it.
    """
    User = get_user_model()
    user, _ = User.objects.select_for_update().get_or_create(username=username)
    changed = not (user.is_active and user.is_staff and user.is_superuser)
    user.is_active = user.is_staff = user.is_superuser = True
    if not user.check_password(password):
        user.set_password(password)
        changed = True
    if changed:
        user.save()
    return user


def membership_visit_record(*, user_id: int, farm_ref: str) -> int:
    """Note that the user visited the farm named by slug (or id) now; memberships updated (0 or 1)."""
    farms = Farm.objects.filter(slug=farm_ref)
    if farm_ref.isdigit() and not farms.exists():
        farms = Farm.objects.filter(pk=int(farm_ref))
    return Membership.objects.filter(user_id=user_id, farm__in=farms).update(last_visit=timezone.now())


def farm_settings_update(*, farm: Farm, actor: User, name: str, location: str, time_zone: str) -> Farm:
    """Change the farm's name, location and time zone (the slug, in links people keep, stays)."""
    farm.name, farm.location, farm.time_zone = name, location, time_zone
    farm.full_clean()
    with transaction.atomic():
        farm.save(update_fields=["name", "location", "time_zone"])
        team_event_record(farm=farm, actor=actor, kind=TeamEventKind.SETTINGS)
    return farm


def field_save(*, field: Field, actor: User) -> Field:
    """Create or change a field (its slug follows its name when new); recorded in the farm's log."""
    created = field.pk is None
    if created and not field.slug:
        field.slug = _free_field_slug(field.farm, field.name)
    field.full_clean()
    with transaction.atomic():
        field.save()
        verb = "added" if created else "changed"
        team_event_record(farm=field.farm, actor=actor, kind=TeamEventKind.FIELDS, subject=field.name, detail=verb)
    return field


def field_delete(*, field: Field, actor: User) -> None:
    """Delete a field; its devices stay on the farm, unassigned (the foreign key sets NULL)."""
    with transaction.atomic():
        field.delete()
        team_event_record(farm=field.farm, actor=actor, kind=TeamEventKind.FIELDS, subject=field.name, detail="deleted")


def _free_field_slug(farm: Farm, name: str) -> str:
    base = slugify(name)[:50] or "field"
    taken = set(Field.objects.filter(farm=farm, slug__startswith=base).values_list("slug", flat=True))
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def team_event_record(
    *, farm: Farm, actor: User | None, kind: TeamEventKind, subject: str = "", detail: str = ""
) -> TeamEvent:
    name = "" if actor is None else (actor.get_full_name() or actor.get_username())
    return TeamEvent.objects.create(
        farm=farm, actor=actor, actor_name=name or "someone", kind=kind, subject=subject[:254], detail=detail[:200]
    )
