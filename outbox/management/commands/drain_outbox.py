"""Process what is due in the outbox now (what the Celery task does), e.g. after an outage."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from outbox.services import outbox_drain


class Command(BaseCommand):
    help = "Process the outbox messages that are due now, in this process, and print the counts."

    def handle(self, *args: Any, **options: Any) -> None:
        result = outbox_drain()
        self.stdout.write(f"processed {result.processed}, retrying {result.retried}, failed {result.failed}")
