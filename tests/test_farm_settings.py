"""Farm settings (owners) and fields (managers): saved, logged, and errors beside the fields."""

from __future__ import annotations

from typing import Any, cast

import pytest
from django.test import Client
from django.urls import reverse

from farm.models import Field, Membership, Role, TeamEvent, TeamEventKind
from sensors.models import Device
from tests.factories import DeviceFactory, FieldFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def a_member(**kwargs: Any) -> Membership:
    return cast(Membership, MembershipFactory(**kwargs))


def client_for(membership: Membership) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def test_an_owner_renames_the_farm_and_changes_its_time_zone():
    owner = a_member(role=Role.OWNER)
    url = reverse("farm-settings", args=[owner.farm.slug])
    response = client_for(owner).post(url, {"name": "Hill Farm", "location": "Devon", "time_zone": "Europe/Paris"})
    assert response.status_code == 302
    owner.farm.refresh_from_db()
    assert (owner.farm.name, owner.farm.location, owner.farm.time_zone) == ("Hill Farm", "Devon", "Europe/Paris")
    assert TeamEvent.objects.filter(farm=owner.farm, kind=TeamEventKind.SETTINGS).exists()


def test_a_bad_time_zone_and_an_empty_name_are_errors_beside_their_fields():
    owner = a_member(role=Role.OWNER)
    url = reverse("farm-settings", args=[owner.farm.slug])
    response = client_for(owner).post(url, {"name": "", "location": "", "time_zone": "Mars/Olympus"})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_name_error"' in page
    assert 'id="id_time_zone_error"' in page
    assert "Mars/Olympus is not one of the available choices" in page


def test_a_manager_adds_a_field_with_crop_season_and_gdd_base():
    manager = a_member(role=Role.MANAGER)
    url = reverse("farm-fields", args=[manager.farm.slug])
    data = {"name": "Long Acre", "crop": "Maize", "area_ha": "12.5", "season_start": "2026-04-15", "gdd_base_c": "10"}
    assert client_for(manager).post(url, data).status_code == 302
    field = Field.objects.get(farm=manager.farm, name="Long Acre")
    assert (field.slug, field.crop, str(field.season_start), field.gdd_base_c) == (
        "long-acre",
        "Maize",
        "2026-04-15",
        10,
    )


def test_field_errors_sit_beside_the_field():
    manager = a_member(role=Role.MANAGER)
    FieldFactory(farm=manager.farm, name="Long Acre")
    url = reverse("farm-fields", args=[manager.farm.slug])
    data = {"name": "Long Acre", "crop": "", "area_ha": "-3", "season_start": "someday", "gdd_base_c": "99"}
    response = client_for(manager).post(url, data)
    assert response.status_code == 400
    page = response.content.decode()
    for name in ("area_ha", "season_start", "gdd_base_c"):
        assert f'id="id_{name}_error"' in page, name
    assert "already exists" in page


def test_deleting_a_field_leaves_its_devices_on_the_farm_unassigned():
    manager = a_member(role=Role.MANAGER)
    field = cast(Field, FieldFactory(farm=manager.farm))
    device = cast(Device, DeviceFactory(farm=manager.farm, field=field))
    client_for(manager).post(reverse("farm-field-delete", args=[manager.farm.slug, field.pk]))
    device.refresh_from_db()
    assert device.field_id is None
    assert device.farm_id == manager.farm.pk


def test_a_field_of_another_farm_is_not_found():
    manager = a_member(role=Role.MANAGER)
    elsewhere = cast(Field, FieldFactory())
    response = client_for(manager).get(reverse("farm-field-edit", args=[manager.farm.slug, elsewhere.pk]))
    assert response.status_code == 404
