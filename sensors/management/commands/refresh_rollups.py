"""Recompute the rollup buckets that ingest logged dirty, now (what the beat task does every few seconds)."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from sensors.history.rollups import rollups_refresh


class Command(BaseCommand):
    help = (
        "Recompute the hourly and daily rollups of every hour ingest logged dirty, from the raw readings. "
        "The beat task does this every ROLLUPS_REFRESH_SECONDS; run it by hand after stopping Celery, or to "
        "see what a refresh costs."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--wait", type=float, default=30.0, metavar="S", help="seconds to wait while another refresh runs"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        deadline = time.monotonic() + options["wait"]
        result = rollups_refresh()
        while not result.ran:
            if time.monotonic() > deadline:
                raise CommandError("another refresh held the lock the whole time; nothing done")
            time.sleep(0.2)
            result = rollups_refresh()
        done = f"{result.hours} hours and {result.days} days recomputed in {result.seconds:.2f} s."
        self.stdout.write(f"{result.logged} log rows: {done}")
