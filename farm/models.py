"""Farm tenancy: farms, their fields, and who may see them."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/London).") from None


class Farm(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    location = models.CharField(max_length=200, blank=True, help_text="Town, region or address.")
    latitude = models.DecimalField(max_digits=8, decimal_places=5, null=True, blank=True)
    longitude = models.DecimalField(max_digits=8, decimal_places=5, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(latitude__isnull=True) | models.Q(latitude__gte=-90, latitude__lte=90),
                name="farm_latitude_range",
            ),
            models.CheckConstraint(
                condition=models.Q(longitude__isnull=True) | models.Q(longitude__gte=-180, longitude__lte=180),
                name="farm_longitude_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Field(models.Model):
    farm = models.ForeignKey(Farm, on_delete=models.CASCADE, related_name="fields")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60)
    crop = models.CharField(max_length=120, blank=True)
    area_ha = models.DecimalField("area (ha)", max_digits=10, decimal_places=2, null=True, blank=True)
    season_start = models.DateField(
        null=True,
        blank=True,
        help_text="First day of this season: the history's “this season” and GDD sums start here.",
    )
    gdd_base = models.FloatField(
        "GDD base (°C)",
        null=True,
        blank=True,
        help_text="Base temperature of the crop for growing degree days (10 °C if empty).",
    )

    class Meta:
        ordering = ["farm", "name"]
        constraints = [
            models.UniqueConstraint(fields=["farm", "slug"], name="field_unique_slug_per_farm"),
            models.UniqueConstraint(fields=["farm", "name"], name="field_unique_name_per_farm"),
            # Target of devices' composite foreign key (field_id, farm_id): a device's field
            # must belong to the device's farm, enforced by the database.
            models.UniqueConstraint(fields=["id", "farm"], name="field_unique_id_farm"),
            models.CheckConstraint(
                condition=models.Q(area_ha__isnull=True) | models.Q(area_ha__gte=0), name="field_area_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(gdd_base__isnull=True) | models.Q(gdd_base__gte=-10, gdd_base__lt=30),
                name="field_gdd_base_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.farm.name} / {self.name}"


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    MANAGER = "manager", "Manager"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    farm = models.ForeignKey(Farm, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="farm_memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["farm", "user"], name="membership_unique_user_per_farm"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} of {self.farm}"
