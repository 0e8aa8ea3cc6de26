"""kill -9 of a real Celery worker at each step of a delivery: nothing is lost, and a repeat
happens only when the message left before its row was marked sent (README, "Notifications").

Each case plans one webhook delivery in a non-test database (the worker subprocesses' own),
runs a worker that dies at the chosen step, then a healthy worker with beat (the sweep) until
the delivery is sent, and counts what a real HTTP receiver got.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis

from tests.mqtt_fixtures import ROOT, wait_until
from tests.notify_fixtures import HttpReceiver

pytestmark = pytest.mark.slow

SETUP = """
from django.contrib.auth.models import User
from django.db import transaction
from farm.models import Farm, Membership
from notifications.events import NotificationEvent
from notifications.models import NotificationChannel, Severity, Transition
from notifications.services import notifications_plan
user = User.objects.create(username="crash-{n}")
farm = Farm.objects.create(name="Crash {n}", slug="crash-{n}")
Membership.objects.create(farm=farm, user=user, role="manager")
NotificationChannel.objects.create(user=user, kind="webhook", target="{url}")
event = NotificationEvent(key="crash-{n}:fired", farm=farm, severity=Severity.CRITICAL,
                          transition=Transition.FIRED, subject="Frost risk")
with transaction.atomic():
    [delivery] = notifications_plan(event=event, recipients=[user])
print(delivery.pk)
"""


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_notify_probe",
        "DATABASE_URL": database_url,
        "NOTIFY_SWEEP_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def worker(env: dict[str, str], log: Path, *, beat: bool = False) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "celery", "-A", "farm", "worker", "--pool=solo", "-l", "info"]
    args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    if beat:
        args += ["-B", "-s", str(log.with_suffix(".beat"))]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def delivery_state(url: str, delivery_id: int) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT state FROM notifications_delivery WHERE id = %s", [delivery_id]).fetchone()
    return str(row[0]) if row else ""


@pytest.fixture
def e2e(e2e_database_url: str) -> str:
    with psycopg.connect(e2e_database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE notifications_delivery, notifications_notificationchannel, farm_farm CASCADE")
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()  # this suite's own Redis database
    return e2e_database_url


@pytest.mark.parametrize(("step", "sends"), [("before_send", 1), ("after_send", 2), ("after_commit", 1)])
def test_a_worker_killed_at_each_step_loses_no_notification_and_repeats_only_after_send(
    e2e: str, http_receiver: HttpReceiver, tmp_path: Path, step: str, sends: int
):
    n = f"{step}-{time.monotonic_ns()}"
    setup = SETUP.format(n=n, url=http_receiver.url())
    planned = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", setup],
        cwd=ROOT, env=env_for(e2e), capture_output=True, check=True,
    )  # fmt: skip
    delivery_id = int(planned.stdout.decode().split()[-1])
    doomed = worker(env_for(e2e, PROBE_KILL_AT=step, PROBE_MARK=str(tmp_path / "killed")), tmp_path / "a.log")
    try:
        assert doomed.wait(timeout=60) == -9, (tmp_path / "a.log").read_text()
    finally:
        doomed.kill()
    assert (tmp_path / "killed").exists()
    healthy = worker(env_for(e2e), tmp_path / "b.log", beat=True)
    try:
        wait_until(lambda: delivery_state(e2e, delivery_id) == "sent", timeout=60, what="the delivery sent")
        time.sleep(4)  # the redelivered task and a sweep both come by: neither may send again
    finally:
        healthy.terminate()
        healthy.wait(timeout=30)
    assert len(http_receiver.requests) == sends, (tmp_path / "b.log").read_text()[-3000:]
    # A repeat carries the same key, so a receiver can drop it.
    assert len({r.headers["Furrow-Delivery"] for r in http_receiver.requests}) == 1
