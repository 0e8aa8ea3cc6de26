"""Publish one test reading for a registered device over MQTT, and say whether the ingest worker stored it."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sensors.models import Device, normalize_uid
from sensors.probereading import PublishError, default_values, parse_values, probe_reading_send, probe_reading_stored


class Command(BaseCommand):
    help = (
        "Publish one reading for a registered device to farm/<uid>/telemetry on MQTT_URL, as the device would, "
        "then wait for the ingest worker to store it. Without metric=value pairs every sensor of the device "
        "gets the middle of its plausible range."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("uid", help="the device's uid")
        parser.add_argument("values", nargs="*", metavar="metric=value", help="e.g. soil_moisture=27.5")
        parser.add_argument(
            "--wait", type=float, default=15.0, metavar="S", help="seconds to wait for it to be stored (0: do not wait)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        uid = normalize_uid(options["uid"])
        device = Device.objects.filter(uid=uid).first()
        if device is None:
            raise CommandError(f"no device with the uid {uid!r}; register it first (admin → Devices → Add device)")
        try:
            values = parse_values(options["values"]) or default_values(device)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not values:
            raise CommandError(f"device {uid!r} has no sensors; give metric=value pairs")
        try:
            reading = probe_reading_send(
                device=device, values=values, url=settings.MQTT_URL, ca_file=settings.MQTT_CA_FILE
            )
        except PublishError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Published {reading.payload.decode()} to {reading.topic}.")
        if options["wait"] > 0:
            self._wait_until_stored(device, reading, options["wait"])

    def _wait_until_stored(self, device: Device, reading: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stored = probe_reading_stored(device=device, reading=reading)
            if stored == set(reading.values):
                self.stdout.write(self.style.SUCCESS(f"Stored: {', '.join(sorted(stored))} of {device.name}."))
                return
            time.sleep(0.25)
        missing = ", ".join(sorted(set(reading.values) - stored))
        raise CommandError(
            f"not stored within {timeout:g} s: {missing}. Is the ingest worker running (make run starts it)? "
            "A disabled device's messages become dead letters (admin → Dead letters)."
        )
