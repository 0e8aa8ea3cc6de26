"""Writes for farms, their fields and memberships, and the demo login."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.utils.text import slugify

from farm.models import Farm, Field, Membership, Role


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


def field_create(*, farm: Farm, name: str, slug: str = "", crop: str = "", area_ha: Decimal | None = None) -> Field:
    field = Field(farm=farm, name=name, slug=slug or slugify(name), crop=crop, area_ha=area_ha)
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
