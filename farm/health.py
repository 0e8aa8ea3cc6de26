"""The checks behind ``/healthz``: small functions, run together, each timed.

A check is a function (plain or ``async``) that returns a dict of details to
show, or raises to say its dependency is down. Register more with
``register_check``; a failing check with ``required=True`` turns the answer
into a 503 so that a load balancer or supervisor takes the process out.

The ``ingest`` check is informational: it shows what
``sensors.ingest.stats.ingest_health()`` reports (each worker's received,
stored, dead letters, unknown, batch size, flush time, lag and the age of its
last report, plus that module's own status and problems) and fails only when
a worker that has reported is now stale (no report for three of its
reporting intervals: stalled or killed). No report at all (a web-only
deployment, a worker still in its first interval, or a worker that shut
down cleanly) and an unreadable report are not failures.

The ``broker_drops`` check shows what each worker's broker watch reports
(``sensors.ingest.brokerdrops``) and fails, naming ``max_queued_messages``,
when the broker's dropped-messages counter rose since the worker started or
within the last hour. It is registered with ``required=False``: readings the
broker dropped are lost already, and taking the web process out of a load
balancer would only hide the dashboards too; the check's ``"ok": false`` and
the top-level ``"warnings"`` list are what a monitor should alert on. A
broker without the counter (amqtt) is ``"unknown"``, not a failure.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connections

logger = logging.getLogger(__name__)

Details = dict[str, Any]
CheckFunc = Callable[[], Details] | Callable[[], Awaitable[Details]]

CHANNEL_LAYER_TIMEOUT = 2.0
CHANNEL_LAYER_RESEND = 0.25
ERROR_MAX_CHARS = 300
RESERVED_KEYS = frozenset({"ok", "ms", "error"})


class HealthCheckError(Exception):
    """A check found its dependency unhealthy (as opposed to crashing); ``details`` still get shown."""

    def __init__(self, message: str, *, details: Details | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@dataclass(frozen=True, slots=True)
class HealthCheck:
    name: str
    func: CheckFunc
    required: bool = True


def check_database() -> Details:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        (one,) = cursor.fetchone() or (None,)
    if one != 1:
        raise HealthCheckError(f"SELECT 1 returned {one!r}")
    return {}


async def check_channel_layer() -> Details:
    """A real round trip through the channel layer: send to a fresh channel and read it back.

    A pub/sub layer keeps nothing for a channel nobody listens to yet, and its SUBSCRIBE and
    our PUBLISH travel on two connections: the ping is sent again every ``CHANNEL_LAYER_RESEND``
    seconds until it is heard or the timeout passes.
    """
    layer = get_channel_layer()
    if layer is None:
        raise HealthCheckError("no channel layer is configured")
    nonce = uuid.uuid4().hex
    channel = ""
    heard: asyncio.Future[dict[str, Any]] | None = None
    try:
        async with asyncio.timeout(CHANNEL_LAYER_TIMEOUT):
            channel = await layer.new_channel("healthz.")
            heard = asyncio.ensure_future(layer.receive(channel))
            while not heard.done():
                await layer.send(channel, {"type": "healthz.ping", "nonce": nonce})
                await asyncio.wait({heard}, timeout=CHANNEL_LAYER_RESEND)
            message = heard.result()
    except TimeoutError:
        raise HealthCheckError(f"no answer within {CHANNEL_LAYER_TIMEOUT:g} s") from None
    finally:
        if heard is not None and not heard.done():
            heard.cancel()  # a cancelled receive lets its channel go
            await asyncio.gather(heard, return_exceptions=True)
        elif channel:
            await _let_go(layer, channel)
    if message.get("nonce") != nonce:
        raise HealthCheckError("received a different message than the one sent")
    return {"backend": type(layer).__name__}


async def _let_go(layer: Any, channel: str) -> None:
    """Forget ``channel`` the way a consumer's channel is forgotten: a receive that is cancelled.

    Channels has no "delete channel" call; the pub/sub layer unsubscribes a channel when a
    receive on it is cancelled, which is what ends every consumer. Without this each check
    would leave a subscription behind in the web process.
    """
    leaving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)  # let it start waiting
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)


def check_ingest() -> Details:
    """The ingest workers' figures; fails only when a worker that reported has gone quiet."""
    try:
        from sensors.ingest.stats import ingest_health  # optional: the web can run without ingest
    except ImportError:
        return {"status": "unknown", "detail": "the ingest worker does not publish figures"}
    try:
        report = dict(ingest_health())
    except Exception as exc:  # informational: an unreadable report must not take the web process out
        logger.warning("healthz: reading the ingest report failed", exc_info=True)
        return {"status": "unknown", "detail": _describe(exc)}
    workers = report.get("workers") or {}
    stale = sorted(name for name, figures in workers.items() if figures.get("stale"))
    if stale:
        ages = ", ".join(f"{name} ({workers[name].get('age_s')} s ago)" for name in stale)
        raise HealthCheckError(f"stale ingest report: {ages}", details=report)
    return report


def check_broker_drops() -> Details:
    """The broker's dropped-messages counter as the ingest workers see it; fails on a recent rise."""
    try:
        from sensors.ingest.brokerdrops import broker_drops_health  # optional, like the ingest check
    except ImportError:
        return {"status": "unknown", "detail": "the ingest worker does not watch the broker"}
    try:
        report = broker_drops_health()
    except Exception as exc:
        logger.warning("healthz: reading the broker drop figures failed", exc_info=True)
        return {"status": "unknown", "detail": _describe(exc)}
    if not report["ok"]:
        raise HealthCheckError("; ".join(report["problems"]), details=report)
    return report


_checks: list[HealthCheck] = [
    HealthCheck("database", check_database),
    HealthCheck("channel_layer", check_channel_layer),
    HealthCheck("ingest", check_ingest),
    HealthCheck("broker_drops", check_broker_drops, required=False),
]


def register_check(name: str, func: CheckFunc, *, required: bool = True) -> None:
    """Add (or replace) a check; apps call this from ``AppConfig.ready``."""
    _checks[:] = [c for c in _checks if c.name != name]
    _checks.append(HealthCheck(name, func, required))


def registered_checks() -> list[HealthCheck]:
    return list(_checks)


def _without_reserved(details: Details) -> Details:
    # "ok", "ms" and "error" belong to the runner: a check's own verdict must not override them.
    return {key: value for key, value in details.items() if key not in RESERVED_KEYS}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ") or "no message"
    return f"{type(exc).__name__}: {text}"[:ERROR_MAX_CHARS]


async def _run_one(check: HealthCheck) -> Details:
    started = time.perf_counter()
    try:
        if inspect.iscoroutinefunction(check.func):
            details = await check.func()
        else:
            # thread_sensitive: Django's database connections belong to the thread that opened them.
            details = await sync_to_async(check.func, thread_sensitive=True)()
        result: Details = {"ok": True, **_without_reserved(details)}
    except Exception as exc:
        logger.warning("healthz: %s check failed: %s", check.name, exc)
        shown = _without_reserved(exc.details) if isinstance(exc, HealthCheckError) else {}
        result = {"ok": False, "error": _describe(exc), **shown}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


async def run_checks(checks: list[HealthCheck] | None = None) -> tuple[bool, Details]:
    """Run every check concurrently; healthy when no required check failed."""
    chosen = registered_checks() if checks is None else checks
    results = await asyncio.gather(*(_run_one(c) for c in chosen))
    by_name = {c.name: r for c, r in zip(chosen, results, strict=True)}
    healthy = all(r["ok"] for c, r in zip(chosen, results, strict=True) if c.required)
    return healthy, by_name
