"""factory_boy factories shared by the whole suite."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from farm.models import Farm, Field, Membership, Role
from sensors.models import DeadLetter, Device, DeviceKind, MetricSpec, Sensor, UnknownDevice


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class FarmFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Farm

    name = factory.Sequence(lambda n: f"Farm {n}")
    slug = factory.Sequence(lambda n: f"farm-{n}")
    time_zone = "Europe/London"
    location = "Somerset"


class FieldFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Field

    farm = factory.SubFactory(FarmFactory)
    name = factory.Sequence(lambda n: f"Field {n}")
    slug = factory.Sequence(lambda n: f"field-{n}")
    crop = "Wheat"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    farm = factory.SubFactory(FarmFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MANAGER


class DeviceKindFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceKind

    name = factory.Sequence(lambda n: f"Probe kind {n}")
    slug = factory.Sequence(lambda n: f"probe-kind-{n}")
    expected_interval = 300


class MetricSpecFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MetricSpec

    kind = factory.SubFactory(DeviceKindFactory)
    key = "soil_moisture"
    label = "Soil moisture"
    unit = "%"
    min_value = 0.0
    max_value = 100.0


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    uid = factory.Sequence(lambda n: f"dev-{n}")
    name = factory.Sequence(lambda n: f"Device {n}")
    farm = factory.SubFactory(FarmFactory)
    field = factory.LazyAttribute(lambda d: FieldFactory(farm=d.farm))
    kind = factory.SubFactory(DeviceKindFactory)


class SensorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sensor

    device = factory.SubFactory(DeviceFactory)
    key = "soil_moisture"
    label = "Soil moisture"
    unit = "%"
    min_value = 0.0
    max_value = 100.0


class UnknownDeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UnknownDevice

    uid = factory.Sequence(lambda n: f"stranger-{n}")
    source = "native"
    topic = factory.LazyAttribute(lambda u: f"farm/{u.uid}/telemetry")
    first_seen = factory.LazyFunction(timezone.now)
    last_seen = factory.LazyFunction(timezone.now)
    message_count = 3
    last_payload = '{"soil_moisture": 30.5}'


class DeadLetterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeadLetter

    received_at = factory.LazyFunction(timezone.now)
    last_received_at = factory.LazyAttribute(lambda d: d.received_at)
    topic = "farm/probe-1/telemetry"
    payload = b'{"soil_moisture": NaN}'
    payload_size = factory.LazyAttribute(lambda d: len(d.payload))
    reason = "soil_moisture is NaN, not a number"
    source = "native"
