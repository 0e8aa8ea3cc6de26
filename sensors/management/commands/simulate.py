"""Publish realistic telemetry for the registered devices (the demo), or a steady load (the benchmark)."""

from __future__ import annotations

import argparse
import math
import signal
import threading
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from farm.models import Farm
from sensors.simulator import (
    MALFORMED_KINDS,
    SHAPE_CHOICES,
    Excursion,
    SimConfig,
    SimDevice,
    catalogue_keys,
    devices_summary,
    run_simulation,
    site_for,
    synthetic_devices,
)
from sensors.simulator.mqtt import MAX_WINDOW, PublishError
from sensors.simulator.readiness import wait_for_ingest
from sensors.simulator.registry import registered_sim_devices, synthetic_devices_register


def _rate(value: str) -> float:
    if value.lower() in ("max", "inf"):
        return math.inf
    rate = float(value)
    if not 0 < rate < math.inf:
        raise argparse.ArgumentTypeError("the rate is a positive number of messages per second, or 'max'")
    return rate


def _share(value: str) -> float:
    share = float(value)
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError("a share is between 0 and 1")
    return share


def _faults(value: str) -> tuple[str, ...]:
    kinds = tuple(kind.strip() for kind in value.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in MALFORMED_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown fault {', '.join(unknown)}; choose from {', '.join(MALFORMED_KINDS)}"
        )
    return kinds


def _excursion(value: str) -> Excursion:
    """UID,METRIC,VALUE,EVERY,FOR (seconds), e.g. 70b3d57ed0051a3f,water_level,0.35,300,60."""
    parts = [part.strip() for part in value.split(",")]
    try:
        uid, key, level, every, lasting = parts
        excursion = Excursion(uid, key, float(level), float(every), float(lasting))
    except ValueError:
        raise argparse.ArgumentTypeError("an excursion is UID,METRIC,VALUE,EVERY,FOR (seconds)") from None
    if not 0 < excursion.lasting < excursion.every or not math.isfinite(excursion.value):
        raise argparse.ArgumentTypeError("an excursion needs 0 < FOR < EVERY and a finite VALUE")
    return excursion


def _positive(value: str) -> float:
    number = float(value)
    if not 0 < number < math.inf:
        raise argparse.ArgumentTypeError("must be a positive number")
    return number


class Command(BaseCommand):
    help = (
        "Publish simulated sensor telemetry over MQTT (MQTT_URL): by default for the enabled devices of a farm "
        "(or all farms) on their own schedules, sped up for a live demo; with --rate, a steady load for benchmarks. "
        "Ctrl-C or SIGTERM stops it and prints what was published and acknowledged."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--farm", metavar="SLUG", help="only this farm's devices (default: every farm)")
        parser.add_argument("--devices", type=int, metavar="N", help="at most N registered devices")
        parser.add_argument("--synthetic", type=int, metavar="N", help="N made-up devices instead of registered ones")
        parser.add_argument(
            "--metrics",
            type=int,
            default=4,
            metavar="N",
            help="synthetic devices: report the first N metric keys of the catalogue (1-12)",
        )
        parser.add_argument(
            "--register",
            action="store_true",
            help="synthetic devices: register them in --farm first, so their readings are stored",
        )
        parser.add_argument(
            "--rate",
            type=_rate,
            metavar="MSG_PER_S",
            help="load mode: this many messages per second in total, or 'max' for flat out",
        )
        parser.add_argument(
            "--interval",
            type=_positive,
            metavar="S",
            help="schedule mode: seconds between one device's messages (default: its interval/speedup)",
        )
        parser.add_argument(
            "--speedup",
            type=_positive,
            default=90.0,
            help="schedule mode: compress the registered intervals by this factor (default 90)",
        )
        parser.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds")
        parser.add_argument("--count", type=int, metavar="N", help="stop after N messages")
        parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
        parser.add_argument(
            "--malformed",
            type=_share,
            default=0.0,
            metavar="SHARE",
            help="replace this share (0-1) of messages with malformed ones",
        )
        parser.add_argument(
            "--faults",
            type=_faults,
            default=MALFORMED_KINDS,
            metavar="KIND,...",
            help=f"which malformations --malformed injects, in turn (default all: {', '.join(MALFORMED_KINDS)})",
        )
        parser.add_argument(
            "--dropout",
            type=_share,
            default=0.1,
            metavar="SHARE",
            help="schedule mode: chance a device drops off in a stretch of 40 reports (0 disables)",
        )
        parser.add_argument(
            "--backfill",
            type=float,
            default=0.0,
            metavar="HOURS",
            help="schedule mode: first publish this many hours of history",
        )
        parser.add_argument(
            "--excursion",
            type=_excursion,
            action="append",
            default=[],
            metavar="UID,METRIC,VALUE,EVERY,FOR",
            help="the device reports VALUE for METRIC during the first FOR seconds of every EVERY (live "
            "reports, not the backfill): provokes an alert now and then; repeatable",
        )
        parser.add_argument("--clients", type=int, default=1, metavar="K", help="spread over K MQTT connections")
        parser.add_argument(
            "--window",
            type=int,
            default=1_000,
            metavar="N",
            help=f"unacknowledged messages per connection (1-{MAX_WINDOW})",
        )
        parser.add_argument("--seed", type=int, default=0, help="same seed, same devices' quirks and weather")
        parser.add_argument(
            "--shape",
            choices=SHAPE_CHOICES,
            default="mixed",
            help="payload shape; 'mixed': DevEUI uids go through ChirpStack or TTS, others native",
        )
        parser.add_argument("--url", default=None, help="broker URL (default: MQTT_URL)")
        parser.add_argument(
            "--wait-for-ingest",
            type=float,
            default=0.0,
            metavar="S",
            help="first wait up to S seconds for an ingest worker to report that it is subscribed "
            "(a broker drops messages nobody subscribes to); then publish anyway",
        )
        parser.add_argument(
            "--report",
            type=float,
            default=None,
            metavar="S",
            help="log a progress line every S seconds (default 30; 5 with --rate; 0 for none)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._check(options)
        devices = self._devices(options)
        stop = threading.Event()
        config = self._config(options, devices, stop)
        mode = "flat out" if config.rate == math.inf else f"{config.rate:g} msg/s" if config.rate else "schedule"
        self.stdout.write(f"Simulating {len(devices)} devices ({devices_summary(devices)}), {mode}, QoS {config.qos}.")
        previous = self._install_signals(stop)
        try:
            if options["wait_for_ingest"] > 0:
                self._wait_for_ingest(options["wait_for_ingest"], stop)
            summary = run_simulation(config)
        except PublishError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        for line in summary.lines():
            self.stdout.write(line)

    def _wait_for_ingest(self, timeout: float, stop: threading.Event) -> None:
        self.stdout.write("Waiting for an ingest worker to subscribe before publishing.")
        started = time.monotonic()
        if wait_for_ingest(timeout=timeout, stop=stop):
            self.stdout.write(f"An ingest worker is subscribed (after {time.monotonic() - started:.1f} s).")
        elif not stop.is_set():
            self.stderr.write(f"No ingest worker reported a subscription within {timeout:g} s; publishing anyway.")

    def _check(self, options: dict[str, Any]) -> None:
        if options["clients"] < 1:
            raise CommandError("--clients must be at least 1")
        if not 1 <= options["window"] <= MAX_WINDOW:
            raise CommandError(f"--window must be between 1 and {MAX_WINDOW}")
        if options["register"] and not (options["synthetic"] and options["farm"]):
            raise CommandError("--register needs --synthetic N and --farm SLUG")

    def _devices(self, options: dict[str, Any]) -> list[SimDevice]:
        allow_seconds = options["rate"] is None
        if options["synthetic"]:
            return self._synthetic(options, allow_seconds)
        devices = registered_sim_devices(
            farm_slug=options["farm"],
            limit=options["devices"],
            shape=options["shape"],
            seed=options["seed"],
            allow_seconds=allow_seconds,
        )
        if not devices:
            where = f"farm {options['farm']!r}" if options["farm"] else "any farm"
            raise CommandError(f"No enabled devices with metrics in {where}; register some, or use --synthetic N.")
        return devices

    def _synthetic(self, options: dict[str, Any], allow_seconds: bool) -> list[SimDevice]:
        farm = Farm.objects.filter(slug=options["farm"]).first() if options["farm"] else None
        if options["farm"] and farm is None:
            raise CommandError(f"No farm with the slug {options['farm']!r}.")
        try:
            keys = catalogue_keys(options["metrics"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        slug = farm.slug if farm else "simulated"
        site = site_for(
            farm_slug=slug,
            time_zone=farm.time_zone if farm else "UTC",
            latitude=float(farm.latitude) if farm and farm.latitude is not None else None,
            seed=options["seed"],
        )
        devices = synthetic_devices(
            options["synthetic"],
            keys=keys,
            site=site,
            farm_slug=slug,
            shape=options["shape"],
            seed=options["seed"],
            allow_seconds=allow_seconds,
        )
        if options["register"] and farm is not None:
            created = synthetic_devices_register(farm=farm, devices=devices)
            self.stdout.write(f"Registered {created} new synthetic devices in {farm.slug}.")
        return devices

    def _config(self, options: dict[str, Any], devices: list[SimDevice], stop: threading.Event) -> SimConfig:
        report = options["report"]
        if report is None:
            report = 5.0 if options["rate"] else 30.0
        return SimConfig(
            url=options["url"] or settings.MQTT_URL,
            devices=devices,
            rate=options["rate"],
            interval=options["interval"],
            speedup=options["speedup"],
            duration=options["duration"],
            max_messages=options["count"],
            qos=options["qos"],
            malformed=options["malformed"],
            faults=options["faults"],
            clients=options["clients"],
            window=options["window"],
            seed=options["seed"],
            dropout=options["dropout"],
            backfill_hours=options["backfill"],
            ca_file=settings.MQTT_CA_FILE,
            huge_bytes=settings.INGEST_MAX_PAYLOAD + 16 * 1024,
            report_every=report,
            excursions=tuple(options["excursion"]),
            stop=stop,
        )

    def _install_signals(self, stop: threading.Event) -> dict[int, Any]:
        """First Ctrl-C or SIGTERM: stop publishing, wait for acks, print the summary. A second: quit at once."""

        def handler(signum: int, frame: FrameType | None) -> None:
            if stop.is_set():
                raise KeyboardInterrupt
            self.stderr.write("Stopping: waiting for the broker to acknowledge what is in flight (again to quit).")
            stop.set()

        return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
