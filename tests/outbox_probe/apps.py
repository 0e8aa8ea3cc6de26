from __future__ import annotations

import os
import signal

from django.apps import AppConfig
from django.db import connection, transaction

from outbox.handlers import register_outbox_handler
from outbox.services import OutboxItem, outbox_enqueue_many
from sensors.hooks import BatchOutcome, register_batch_writer

TOPIC = "probe.reading"


def probe_writer(outcome: BatchOutcome) -> None:
    items = [
        OutboxItem(TOPIC, {"sensor": sensor_id, "ts": ts}, key=f"{sensor_id}:{ts}")
        for _, _, sensor_id, ts, _ in outcome.new_rows()
    ]
    if items and os.environ.get("PROBE_KILL_AFTER_COMMIT") == "1":
        # Registered before the outbox's nudge: the process dies after the commit, before the nudge.
        transaction.on_commit(_kill_worker)
    outbox_enqueue_many(items=items)


def _kill_worker() -> None:
    if os.environ.get("INGEST_STORE_PROCESS", "true") != "false":
        os.kill(os.getppid(), signal.SIGKILL)  # the worker; this is its store process
    os.kill(os.getpid(), signal.SIGKILL)


def probe_handler(payload: dict[str, int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO outbox_probe_effects (sensor_id, ts) VALUES (%s, %s)", [payload["sensor"], payload["ts"]]
        )


class OutboxProbeConfig(AppConfig):
    name = "tests.outbox_probe"
    label = "outbox_probe"

    def ready(self) -> None:
        register_batch_writer(probe_writer)
        register_outbox_handler(TOPIC, probe_handler)
