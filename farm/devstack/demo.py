"""The demo farm that ``make run`` seeds once: Brookside Farm, its fields, devices, owner and 90 days of history.

Device kinds come from the sensors app's data migration, matched by slug. The
LoRaWAN devices have a DevEUI (16 lower-case hex digits) as their uid, so the
simulator publishes them in ChirpStack / The Things Stack shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.utils import timezone

from alerts.demo import demo_rules_ensure
from farm.devstack.history import HistorySeeded, demo_history_seed, history_first_day
from farm.models import Farm, Role
from farm.services import farm_create, field_create, membership_set, superuser_ensure
from notifications.demo import demo_channels_ensure
from sensors.models import DeviceKind
from sensors.services import device_register

DEMO_FARM = {
    "name": "Brookside Farm",
    "slug": "brookside",
    "time_zone": "Europe/London",
    "location": "Somerset, England",
    "latitude": Decimal("51.14860"),
    "longitude": Decimal("-2.71420"),
}

# (name, slug, crop, area in hectares, season start in days after the seeded history's first day, GDD base °C)
# Winter wheat drilled three weeks in, counted from 5 °C; cider apples from the first day, 4.5 °C; tunnel
# strawberries replanted ten days in, 10 °C.
DEMO_FIELDS = [
    ("North Meadow", "north-meadow", "Winter wheat", Decimal("12.50"), 21, Decimal("5")),
    ("Orchard", "orchard", "Cider apples", Decimal("4.20"), 0, Decimal("4.5")),
    ("Polytunnels", "polytunnels", "Strawberries", Decimal("0.80"), 10, Decimal("10")),
]

# (uid, name, field slug, kind slug)
DEMO_DEVICES = [
    ("brookside-soil-1", "North Meadow soil probe 1", "north-meadow", "soil-probe"),
    ("brookside-soil-2", "North Meadow soil probe 2", "north-meadow", "soil-probe"),
    ("brookside-weather", "Weather station", "north-meadow", "weather-station"),
    ("brookside-rain", "Rain gauge", "north-meadow", "rain-gauge"),
    ("a84041000181c2d1", "Orchard soil probe (LoRaWAN)", "orchard", "soil-probe"),
    ("a84041000181c2d2", "Orchard air sensor (LoRaWAN)", "orchard", "air-th"),
    ("brookside-tunnel-air", "Polytunnel air sensor", "polytunnels", "air-th"),
    ("70b3d57ed0051a3f", "Irrigation tank level (LoRaWAN)", "polytunnels", "water-level"),
    ("brookside-pump-battery", "Pump battery", "polytunnels", "battery-monitor"),
]


class DemoKindMissing(Exception):
    """A device kind the demo needs is not in the database."""


@dataclass(frozen=True)
class DemoSeed:
    farm: Farm
    user: AbstractUser
    created: bool
    history: HistorySeeded | None = None


def demo_kinds() -> dict[str, DeviceKind]:
    slugs = {kind for *_, kind in DEMO_DEVICES}
    kinds = {kind.slug: kind for kind in DeviceKind.objects.filter(slug__in=slugs).prefetch_related("metrics")}
    missing = sorted(slugs - kinds.keys())
    if missing:
        raise DemoKindMissing(
            f"device kinds {', '.join(missing)} are missing; run `python manage.py migrate` "
            "(the sensors app ships them in a data migration)"
        )
    return kinds


def demo_farm_create(*, now: datetime) -> Farm:
    kinds = demo_kinds()
    farm = farm_create(**DEMO_FARM)  # type: ignore[arg-type]
    first = history_first_day(farm, now)
    fields = {slug: field_create(farm=farm, name=name, slug=slug, crop=crop, area_ha=area,
                                 season_start=first + timedelta(days=after), gdd_base_c=base)
              for name, slug, crop, area, after, base in DEMO_FIELDS}  # fmt: skip
    for uid, name, field, kind in DEMO_DEVICES:
        device_register(uid=uid, name=name, farm=farm, field=fields[field], kind=kinds[kind])
    return farm


@transaction.atomic
def demo_seed(*, username: str, password: str, history: bool = False) -> DemoSeed:
    """Create the demo farm the first time (with its past when ``history``); every time, make ``username``
    a superuser owning it, with notification channels.

    ``make run`` seeds the history (``seed_demo``); tests that share the demo farm start it empty.
    """
    user = superuser_ensure(username=username, password=password)
    farm = Farm.objects.filter(slug=DEMO_FARM["slug"]).first()
    created, seeded = farm is None, None
    if farm is None:
        now = timezone.now()
        farm = demo_farm_create(now=now)
        demo_rules_ensure(farm=farm)
        if history:
            seeded = demo_history_seed(farm=farm, now=now)
    membership_set(farm=farm, user=user, role=Role.OWNER)
    demo_channels_ensure(user=user)  # the demo's alerts reach the bell and var/mail/
    return DemoSeed(farm=farm, user=user, created=created, history=seeded)
