"""After a commit, ask Celery to drain the outbox, without ever holding up the committer.

``request_drain`` only sets a flag; a daemon thread sends one ``drain_outbox`` task per
burst of requests. A nudge lost to a crash or an unreachable Redis costs latency only:
the beat sweep (``outbox.tasks.sweep_outbox``) drains whatever is due.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)

_wanted = threading.Event()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def request_drain() -> None:
    global _thread
    _wanted.set()
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="outbox-nudge", daemon=True)
            _thread.start()


def send_nudge() -> None:
    from outbox.tasks import drain_outbox

    drain_outbox.apply_async(retry=False)


def _run() -> None:
    while True:
        _wanted.wait()
        _wanted.clear()
        try:
            send_nudge()
        except Exception as exc:  # Redis down: the sweep drains it later
            logger.warning("could not nudge the outbox drain (%s); the periodic sweep will", exc)
