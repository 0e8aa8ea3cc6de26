"""Run the MQTT ingest worker until SIGTERM or Ctrl-C (a second one exits at once)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sensors.ingest.brokerwatch import watching_broker
from sensors.ingest.config import WorkerConfig
from sensors.ingest.stats import IngestStats
from sensors.ingest.topics import FILTERS
from sensors.ingest.worker import IngestWorker

logger = logging.getLogger("sensors.ingest")


class Command(BaseCommand):
    help = (
        "Subscribe to the MQTT broker (MQTT_URL) and store readings, device status and link health. "
        "Acknowledges each message only after its batch has committed. Options override the INGEST_* settings."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--client-id", help="stable MQTT client id (INGEST_CLIENT_ID)")
        parser.add_argument("--sources", help=f"comma-separated subset of {', '.join(FILTERS)} (INGEST_SOURCES)")
        parser.add_argument("--share-group", help="subscribe through $share/<group>/ (INGEST_SHARE_GROUP)")
        parser.add_argument("--batch-size", type=int, help="messages per transaction (INGEST_BATCH_SIZE)")
        parser.add_argument("--batch-ms", type=int, help="flush a batch this old (INGEST_BATCH_MS)")
        parser.add_argument("--stats-interval", type=float, help="seconds between summaries (INGEST_STATS_INTERVAL)")

    def handle(self, *args: Any, **options: Any) -> None:
        sources = options["sources"].split(",") if options["sources"] else None
        if sources and set(sources) - set(FILTERS):
            raise CommandError(f"--sources may list {', '.join(FILTERS)}")
        config = WorkerConfig.from_settings(
            client_id=options["client_id"],
            sources=tuple(sources) if sources else None,
            share_group=options["share_group"],
            batch_size=options["batch_size"],
            batch_ms=options["batch_ms"],
            stats_interval=options["stats_interval"],
        )
        if config.batch_size > config.max_pending:
            raise CommandError(f"--batch-size may be at most INGEST_MAX_PENDING ({config.max_pending})")
        stop = threading.Event()
        _install_signal_handlers(stop)
        stats = IngestStats()
        with watching_broker(config, stats=stats, enabled=settings.INGEST_BROKER_WATCH):
            code = IngestWorker(config, stats=stats).run(stop)
        if code:
            raise CommandError("the ingest worker stopped after an unrecoverable error", returncode=code)
        logger.info("ingest %s stopped cleanly", config.client_id)


def _install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            # Second signal: leave now. Unacknowledged messages are redelivered to this client id.
            os._exit(128 + signum)
        logger.info("%s received: storing what is in hand, acknowledging, disconnecting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
