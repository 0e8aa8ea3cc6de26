"""Demo alert rules (alerts/demo.py) on the demo farm that ``make run`` seeds, and the alert the demo provokes.

``make run``'s simulator (the Procfile) draws the irrigation tank down for a minute every five
minutes (``--excursion``), so "Irrigation tank low" fires and resolves during any demo session
of a few minutes. The numbers are checked against the demo's rule, the tank's reporting period
and its simulated level; the mechanism runs end to end (simulator → Mosquitto → ``manage.py
ingest`` → the alerts writer) on a schedule sped up to seconds.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from alerts.demo import DEMO_RULES, demo_rules_ensure
from alerts.models import AlertRule
from farm.devstack.config import BASE_DIR
from farm.devstack.demo import demo_seed
from sensors.management.commands.simulate import _excursion
from sensors.simulator import Excursion, SimConfig
from sensors.simulator.physics import sample
from sensors.simulator.registry import registered_sim_devices
from sensors.simulator.runner import _period
from tests.mqtt_fixtures import ROOT, Broker, WorkerProcess, reset_e2e, wait_until, worker_env

TANK_RULE = "Irrigation tank low"
# The shipped device kinds again (reset_e2e truncates them with the devices), then the demo farm.
SEED = """
import importlib
from django.apps import apps
from farm.devstack.demo import demo_seed
importlib.import_module("sensors.migrations.0004_shipped_device_kinds").install_kinds(apps, None)
importlib.import_module("sensors.migrations.0012_metric_ranges").ranges_fix(apps, None)
demo_seed(username="demo", password="a long enough demo password")
"""


def procfile_excursion() -> Excursion:
    (line,) = [line for line in (BASE_DIR / "Procfile").read_text().splitlines() if line.startswith("simulator:")]
    words = shlex.split(line.removeprefix("simulator:"))
    return _excursion(words[words.index("--excursion") + 1])


@pytest.mark.django_db
def test_the_demo_seed_gives_the_demo_farm_every_demo_rule_once():
    farm = demo_seed(username="demo", password="a long enough demo password").farm
    assert set(AlertRule.objects.filter(farm=farm).values_list("name", flat=True)) == set(DEMO_RULES)
    tank = AlertRule.objects.get(farm=farm, name="Irrigation tank low")
    assert (tank.scope, tank.device.uid if tank.device else None) == ("device", "70b3d57ed0051a3f")
    assert demo_rules_ensure(farm=farm) == []
    assert AlertRule.objects.filter(farm=farm).count() == len(DEMO_RULES)


@pytest.mark.django_db
def test_the_demos_excursion_fires_the_tank_rule_within_five_minutes_and_the_tanks_level_resolves_it():
    excursion = procfile_excursion()
    farm = demo_seed(username="demo", password="a long enough demo password").farm
    rule = AlertRule.objects.get(farm=farm, name=TANK_RULE)
    assert rule.device is not None
    assert (excursion.uid, excursion.key) == (rule.device.uid, rule.metric)
    assert rule.threshold is not None
    assert rule.clear is not None
    assert rule.for_seconds == 0
    assert excursion.value < rule.threshold, "an excursion report breaches the rule at once"
    assert excursion.every <= 300, "one fires within five minutes of any moment"
    (tank,) = [d for d in registered_sim_devices(farm_slug="brookside") if d.uid == excursion.uid]
    period = _period(tank, SimConfig(url="", devices=[tank]))
    assert excursion.lasting >= 3 * period, "at least two reports land inside every excursion, jitter and all"
    now = time.time()
    levels = [
        sample(tank.physics, [rule.metric], now + hour * 3600, ranges=tank.ranges)[rule.metric]
        for hour in range(0, 365 * 24, 3)
    ]
    assert min(levels) >= rule.clear, "the tank's own level, back after the excursion, resolves the alert"


@pytest.fixture
def demo_e2e(e2e_database_url: str) -> str:
    """The e2e database holding just the demo farm with its rules, as ``make run`` seeds it."""
    reset_e2e(e2e_database_url)
    with psycopg.connect(e2e_database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE outbox_outboxmessage")
    env = worker_env(database_url=e2e_database_url, mqtt_url="mqtt://127.0.0.1:1", client_id="demo-seed")
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "shell", "-c", SEED], cwd=ROOT, env=env, check=True)
    return e2e_database_url


@pytest.fixture
def simulator() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def tank_episodes(url: str) -> list[tuple[bool, float]]:
    """(resolved, worst level) of every "Irrigation tank low" episode, oldest first."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT ep.ended_at IS NOT NULL, ep.worst_value FROM alerts_alertepisode ep "
            "JOIN alerts_alertrule r ON r.id = ep.rule_id WHERE r.name = %s ORDER BY ep.started_at",
            [TANK_RULE],
        ).fetchall()
    return [(bool(resolved), float(worst)) for resolved, worst in rows]


@pytest.mark.slow
def test_the_demo_simulator_provokes_a_tank_alert_that_fires_and_resolves_through_the_worker(
    mosquitto: Broker, demo_e2e: str, simulator: list[subprocess.Popen[bytes]], tmp_path: Path
):
    excursion = procfile_excursion()
    worker = WorkerProcess(
        env=worker_env(database_url=demo_e2e, mqtt_url=mosquitto.url, client_id="demo-alert-e2e"),
        log=tmp_path / "worker.log",
    )
    worker.start_and_wait()
    try:
        # The Procfile's excursion, on a clock 30 times faster: every 10 s for 2 s, one report a second.
        sped_up = f"{excursion.uid},{excursion.key},{excursion.value},{excursion.every / 30},{excursion.lasting / 30}"
        env = {**worker.env, "INGEST_CLIENT_ID": ""}
        args = ["simulate", "--farm", "brookside", "--interval", "0.5", "--dropout", "0", "--duration", "60",
                "--excursion", sped_up, "--url", mosquitto.url, "--report", "0"]  # fmt: skip
        log = (tmp_path / "simulator.log").open("wb")
        simulator.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, stdout=log, stderr=log
            )
        )
        wait_until(
            lambda: any(resolved for resolved, _ in tank_episodes(demo_e2e)),
            timeout=45,
            interval=0.25,
            what="the tank alert to fire and resolve",
        )
    finally:
        worker.terminate()
    resolved, worst = tank_episodes(demo_e2e)[0]
    assert (resolved, worst) == (True, excursion.value)
