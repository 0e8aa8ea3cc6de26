"""Farm tenancy: farms, their fields, and who may see them."""

from __future__ import annotations

import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower


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
        "season start", null=True, blank=True, help_text="Growing degree days are counted from this date."
    )
    gdd_base_c = models.DecimalField(
        "GDD base temperature (°C)",
        max_digits=4,
        decimal_places=1,
        default=Decimal("10.0"),
        help_text="Below this temperature a crop does not grow: 10 °C for maize, about 5 °C for wheat.",
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
                condition=models.Q(gdd_base_c__gte=-10, gdd_base_c__lte=40), name="field_gdd_base_plausible"
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
    joined_at = models.DateTimeField(auto_now_add=True, null=True)
    # Set by farm.middleware at most every few minutes, not on every request.
    last_visit = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["farm", "user"], name="membership_unique_user_per_farm"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} of {self.farm}"


class Invitation(models.Model):
    """An emailed, signed, expiring, single-use invitation to join a farm with a role.

    The link carries ``id`` and ``nonce`` signed with SECRET_KEY (farm/invitations.py);
    resending draws a new nonce, so the older link stops working.
    """

    farm = models.ForeignKey(Farm, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    nonce = models.CharField(max_length=32)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="invitation_role_valid"),
            models.CheckConstraint(
                condition=models.Q(accepted_at__isnull=True) | models.Q(revoked_at__isnull=True),
                name="invitation_accepted_or_revoked",
            ),
            # One open invitation per address per farm: a second invite is a resend.
            models.UniqueConstraint(
                "farm",
                Lower("email"),
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_open_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} — {self.get_role_display()} of {self.farm}"


class TeamEventKind(models.TextChoices):
    INVITED = "invited", "invited"
    RESENT = "resent", "resent the invitation to"
    REVOKED = "revoked", "revoked the invitation of"
    JOINED = "joined", "joined"
    ROLE_CHANGED = "role_changed", "changed the role of"
    REMOVED = "removed", "removed"
    LEFT = "left", "left"
    OWNERSHIP = "ownership", "handed ownership to"
    SETTINGS = "settings", "changed the farm settings"
    FIELDS = "fields", "changed the fields"


class TeamEvent(models.Model):
    """The farm's audit log of team and settings changes: who did what to whom, and when.

    Names are copied, not only linked, so the log still reads right after a user is deleted.
    """

    farm = models.ForeignKey(Farm, on_delete=models.CASCADE, related_name="team_events")
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    actor_name = models.CharField(max_length=150)
    kind = models.CharField(max_length=16, choices=TeamEventKind.choices)
    subject = models.CharField(max_length=254, blank=True)
    detail = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            # The team page lists a farm's newest events.
            models.Index(fields=["farm", "-at"], name="teamevent_farm_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.get_kind_display()} {self.subject}".strip()
