"""Reads for the dashboard: who may see which farm, and what a farm's page shows.

Every selector states its joins (``select_related``) so a page costs a fixed
number of queries whatever the number of devices and sensors. Readings are read
through ``sensors.history.selectors``; this module only picks which sensors.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Literal

from django.conf import settings
from django.contrib import auth
from django.db.models import Count, QuerySet
from django.http import Http404

from farm.models import Farm, Field
from farm.selectors import AnyUser, farms_visible_to
from sensors.history.selectors import latest_readings, with_latest
from sensors.history.types import LatestReading
from sensors.models import Device, Sensor

if TYPE_CHECKING:
    from sensors.history.selectors import SensorWithLatest

SocketAccess = Literal["ok", "signed_out", "forbidden"]


def farm_for_user(user: AnyUser, ref: str) -> Farm:
    """The farm named by slug (or numeric id) if ``user`` may see it, else 404.

    A farm the user may not see is indistinguishable from one that does not
    exist, so the URL space leaks nothing.
    """
    visible = farms_visible_to(user)
    # A slug wins over an id, so a farm slugged "2024" stays reachable by its slug.
    farm = visible.filter(slug=ref).first()
    if farm is None and ref.isdigit():
        farm = visible.filter(pk=int(ref)).first()
    if farm is None:
        raise Http404("No such farm.")
    return farm


def user_can_view_farm(user: AnyUser, farm_id: int) -> bool:
    return farms_visible_to(user).filter(pk=farm_id).exists()


def socket_access(*, session_key: str | None, user_id: int, farm_id: int) -> SocketAccess:
    """Whether a socket opened by ``user_id`` with ``session_key`` may still watch ``farm_id``.

    The session is loaded afresh from the store and resolved with Django's own
    ``auth.get_user`` so logout, expiry, deactivation and a password change
    (the session auth hash) all count, exactly as they would for a page view.
    """
    user = session_user(session_key=session_key, user_id=user_id)
    if user is None:
        return "signed_out"
    return "ok" if user_can_view_farm(user, farm_id) else "forbidden"


def session_user(*, session_key: str | None, user_id: int) -> AnyUser | None:
    """The user of ``session_key`` if it is still signed in as ``user_id``, else None (any socket's re-check)."""
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    user = auth.get_user(_SessionHolder(store))  # type: ignore[arg-type]
    return user if user.is_authenticated and user.pk == user_id else None


class _SessionHolder:
    """The one attribute of a request that ``auth.get_user`` reads."""

    def __init__(self, session: object) -> None:
        self.session = session


def dashboard_sensors(farm_id: int) -> QuerySet[SensorWithLatest]:
    """Every sensor of the farm's enabled devices with its newest reading, in page order (field, device, sensor)."""
    return with_latest(
        Sensor.objects.filter(device__farm_id=farm_id, device__enabled=True)
        .select_related("device", "device__field", "device__kind")
        .order_by("device__field__name", "device__name", "device_id", "id")
    )


def sensorless_devices(farm_id: int) -> QuerySet[Device]:
    """Enabled devices that have no sensor yet (registered, never reported)."""
    return (
        Device.objects.filter(farm_id=farm_id, enabled=True)
        .annotate(sensor_count=Count("sensors"))
        .filter(sensor_count=0)
        .select_related("field", "kind")
        .order_by("field__name", "name", "id")
    )


def farm_fields(farm_id: int) -> QuerySet[Field]:
    return Field.objects.filter(farm_id=farm_id).order_by("name")


def farm_devices(farm_id: int) -> QuerySet[Device]:
    return Device.objects.filter(farm_id=farm_id, enabled=True).select_related("kind").order_by("id")


def sensor_for_farm(farm: Farm, sensor_id: int) -> Sensor:
    sensor = (
        Sensor.objects.filter(pk=sensor_id, device__farm_id=farm.pk).select_related("device", "device__kind").first()
    )
    if sensor is None:
        raise Http404("No such sensor on this farm.")
    return sensor


def farm_latest_values(farm_id: int) -> list[LatestReading]:
    """The newest reading of each sensor of the farm's enabled devices (the live snapshot), in one statement."""
    return latest_readings(sensors=Sensor.objects.filter(device__farm_id=farm_id, device__enabled=True).order_by("id"))
