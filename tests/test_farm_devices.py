"""Managers rename devices and move them between fields in the app (issue 11: roles mean something)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from farm.models import Role
from sensors.models import Device
from tests.factories import DeviceFactory, FarmFactory, FieldFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def client_for(membership: Any) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def test_a_manager_renames_a_device_and_moves_it_to_another_field():
    manager: Any = MembershipFactory(role=Role.MANAGER)
    north: Any = FieldFactory(farm=manager.farm, name="North")
    south: Any = FieldFactory(farm=manager.farm, name="South")
    device: Any = DeviceFactory(farm=manager.farm, field=north, name="Probe 7")
    url = reverse("farm-device-edit", args=[manager.farm.slug, device.pk])
    response = client_for(manager).post(url, {"name": "Gate probe", "field": south.pk})
    assert response.status_code == 302
    device.refresh_from_db()
    assert (device.name, device.field_id) == ("Gate probe", south.pk)
    page = client_for(manager).get(reverse("farm-devices", args=[manager.farm.slug])).content.decode()
    assert "Gate probe" in page


def test_a_field_of_another_farm_is_refused_beside_the_field():
    manager: Any = MembershipFactory(role=Role.MANAGER)
    device: Any = DeviceFactory(farm=manager.farm)
    elsewhere: Any = FieldFactory(farm=FarmFactory())
    url = reverse("farm-device-edit", args=[manager.farm.slug, device.pk])
    response = client_for(manager).post(url, {"name": "Gate probe", "field": elsewhere.pk})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert Device.objects.get(pk=device.pk).field_id != elsewhere.pk


def test_an_empty_name_is_shown_beside_the_field_and_nothing_changes():
    manager: Any = MembershipFactory(role=Role.MANAGER)
    device: Any = DeviceFactory(farm=manager.farm, name="Probe 7")
    url = reverse("farm-device-edit", args=[manager.farm.slug, device.pk])
    response = client_for(manager).post(url, {"name": ""})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert Device.objects.get(pk=device.pk).name == "Probe 7"


def test_a_device_of_another_farm_is_not_found():
    manager: Any = MembershipFactory(role=Role.MANAGER)
    other: Any = DeviceFactory(farm=FarmFactory())
    url = reverse("farm-device-edit", args=[manager.farm.slug, other.pk])
    assert client_for(manager).get(url).status_code == 404


def test_a_viewer_sees_no_devices_tab_and_may_not_edit():
    viewer: Any = MembershipFactory(role=Role.VIEWER)
    device: Any = DeviceFactory(farm=viewer.farm)
    client = client_for(viewer)
    dashboard = client.get(reverse("farm-dashboard", args=[viewer.farm.slug])).content.decode()
    assert reverse("farm-devices", args=[viewer.farm.slug]) not in dashboard
    url = reverse("farm-device-edit", args=[viewer.farm.slug, device.pk])
    assert client.post(url, {"name": "x"}).status_code == 403
