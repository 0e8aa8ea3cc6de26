"""Test-only app for Celery worker subprocesses: kill -9 the worker at one step of a delivery.

``PROBE_KILL_AT`` names the step: ``before_send`` (row claimed, nothing sent), ``after_send``
(the message left, its row not yet marked sent), ``after_commit`` (marked sent, task not yet
acknowledged). ``PROBE_MARK`` is a file: the worker dies only the first time.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from django.apps import AppConfig


def _die_once() -> None:
    mark = Path(os.environ["PROBE_MARK"])
    if not mark.exists():
        mark.touch()
        os.kill(os.getpid(), signal.SIGKILL)


class NotifyProbeConfig(AppConfig):
    name = "tests.notify_probe"
    label = "notify_probe"

    def ready(self) -> None:
        step = os.environ.get("PROBE_KILL_AT")
        if not step:
            return
        from notifications import sending, tasks

        send, deliver = sending.message_send, tasks.delivery_send

        def message_send(**kwargs: Any) -> None:
            if step == "before_send":
                _die_once()
            send(**kwargs)
            if step == "after_send":
                _die_once()

        def delivery_send(**kwargs: Any) -> Any:
            outcome = deliver(**kwargs)
            if step == "after_commit":
                _die_once()
            return outcome

        sending.message_send = message_send
        tasks.delivery_send = delivery_send
