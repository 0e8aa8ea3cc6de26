"""The whole live path as separate processes, for the end-to-end and browser tests and the latency bench.

Mosquitto (private, the project's config) → ``manage.py ingest`` → Redis channel layer → daphne →
a WebSocket client, all sharing a migrated, non-test database ``<DATABASE_URL name>_live`` that
pytest-django does not manage. Objects in that database are made by ``seed``, which runs this
module in a subprocess (``python -m tests.e2e_fixtures seed``) so the project's own services
write them, and every run makes fresh uniquely named ones (nothing is truncated between runs).

Clients get a real session: ``http_login`` signs in through daphne's login form with the CSRF
round trip a browser makes.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.mqtt_fixtures import (
    ROOT,
    Broker,
    WorkerProcess,
    free_port,
    migrate,
    wait_until,
    with_database,
    worker_env,
)

# Loopback only: never through a proxy named by the environment.
NO_PROXY = urllib.request.ProxyHandler({})
SESSION_COOKIE = "sessionid"  # Django's default SESSION_COOKIE_NAME; settings do not change it
LIVE_SUFFIX = "_live"


# --- the database the subprocesses share ---------------------------------------------------------


def live_database_url(base_url: str, suffix: str = LIVE_SUFFIX) -> str:
    """Create (once) and migrate ``<name of base_url><suffix>``; returns its URL."""
    name = urlsplit(base_url).path.lstrip("/") + suffix
    with psycopg.connect(with_database(base_url, "postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(base_url, name)
    migrate(url)
    return url


def service_env(
    *, database_url: str, mqtt_url: str, settings: str = "farm.settings_test", **extra: str
) -> dict[str, str]:
    """The environment of every process of the stack: the same database, Redis, broker and settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        DATABASE_URL=database_url,
        MQTT_URL=mqtt_url,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def seed(env: dict[str, str], request: dict[str, Any]) -> dict[str, Any]:
    """Run one seeding function (below) in a subprocess against ``env``'s database."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e_fixtures", "seed"],
        cwd=ROOT,
        env=env,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"seeding {request.get('what')} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- daphne ------------------------------------------------------------------------------------


@dataclass
class Daphne:
    """``daphne farm.asgi:application`` on a fixed port, as in the Procfile."""

    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), *self.extra_args]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([*command, "farm.asgi:application"], cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        wait_until(self._answers, timeout=timeout, interval=0.1, what=f"daphne on port {self.port} (log: {self.log})")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"daphne exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
        try:
            with urllib.request.build_opener(NO_PROXY).open(f"{self.base_url}/login/", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL: no goodbye to the sockets, as when the machine or the process dies."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def manage_shell(env: dict[str, str], code: str) -> None:
    """Run ``code`` in ``manage.py shell`` against ``env``'s database: seeding, or a worker's step."""
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True, timeout=120)


@contextlib.contextmanager
def daphne_serving(env: dict[str, str], workdir: Path) -> Iterator[Daphne]:
    """Daphne on a free port while the block runs (its log on stderr if the block fails); ``workdir`` removed after."""
    daphne = Daphne(env=env, port=free_port(), log=workdir / "daphne.log")
    daphne.start()
    try:
        yield daphne
    except BaseException:
        sys.stderr.write(f"--- daphne log ---\n{daphne.log_text()[-4000:]}\n")
        raise
    finally:
        daphne.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def http_login(base_url: str, username: str, password: str) -> str:
    """Sign in through the login form (GET for the CSRF token and cookie, then POST); the session key."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(NO_PROXY, urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base_url}/login/", timeout=10) as response:
        page = response.read().decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "the login page has no CSRF token"
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": match.group(1), "username": username, "password": password, "next": "/"}
    ).encode()
    request = urllib.request.Request(f"{base_url}/login/", data=form, headers={"Referer": f"{base_url}/login/"})
    with opener.open(request, timeout=10) as response:
        landed = urlsplit(response.geturl()).path
    sessions = [cookie.value for cookie in jar if cookie.name == SESSION_COOKIE]
    assert landed == "/", f"signing in as {username!r} failed (ended on {landed})"
    assert sessions, "signed in but got no session cookie"
    return str(sessions[0])


def browser_sign_in(page: Any, base_url: str, username: str, password: str) -> None:
    """Sign in through the login form in a browser page, as a person does."""
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def ws_headers(base_url: str, session_key: str | None) -> dict[str, str]:
    """What a browser on our page sends with the WebSocket handshake: its Origin and its cookie."""
    headers = {"Origin": base_url}
    if session_key is not None:
        headers["Cookie"] = f"{SESSION_COOKIE}={session_key}"
    return headers


def mqtt_publish_one(port: int, topic: str, payload: bytes | str) -> None:
    """Publish one QoS 1 message and wait for the broker's PUBACK."""
    from tests.mqtt_fixtures import publish

    body = payload.encode() if isinstance(payload, str) else payload
    result = publish(port, [(topic, body)])
    assert result.acked == {0}, f"the broker did not acknowledge {topic}"


# --- the stack as a pytest fixture ----------------------------------------------------------------


@dataclass
class LiveStack:
    broker: Broker
    database_url: str
    env: dict[str, str]
    worker: WorkerProcess
    daphne: Daphne
    workdir: Path

    def publish(self, topic: str, payload: bytes | str) -> None:
        mqtt_publish_one(self.broker.port, topic, payload)

    def login(self, username: str, password: str) -> str:
        return http_login(self.daphne.base_url, username, password)

    def seed(self, request: dict[str, Any]) -> dict[str, Any]:
        return seed(self.env, request)

    def refresh_rollups(self) -> None:
        """What the beat task does every few seconds (the live stack runs no Celery): ``manage.py refresh_rollups``."""
        subprocess.run(
            [sys.executable, "manage.py", "refresh_rollups"], cwd=ROOT, env=self.env, timeout=120, check=True,
            capture_output=True,
        )  # fmt: skip

    def daphne_restart(self) -> None:
        """A new daphne on the same port (after ``daphne.kill()``)."""
        self.daphne.start()

    def wait_stored(self, sensor_id: int, value: float, timeout: float = 10) -> None:
        """Until the worker has committed a reading of ``value`` for the sensor."""
        wait_until(lambda: self._stored(sensor_id, value), timeout=timeout, what=f"a reading {value} stored")

    def _stored(self, sensor_id: int, value: float) -> bool:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT 1 FROM sensors_reading WHERE sensor_id = %s AND value = %s",
                               [sensor_id, value]).fetchone()  # fmt: skip
        return row is not None

    def ws_headers(self, session_key: str | None) -> dict[str, str]:
        return ws_headers(self.daphne.base_url, session_key)

    @contextlib.contextmanager
    def logs_on_failure(self) -> Iterator[None]:
        """Show the tails of the worker's and daphne's logs when the block fails."""
        try:
            yield
        except BaseException:
            sys.stderr.write(f"--- ingest log ---\n{self.worker.log_text()[-4000:]}\n")
            sys.stderr.write(f"--- daphne log ---\n{self.daphne.log_text()[-4000:]}\n")
            raise


@pytest.fixture(scope="session")
def live_stack(mosquitto: Broker) -> Iterator[LiveStack]:
    """Mosquitto → ingest worker → Redis channel layer → daphne, shared by the session's live tests.

    Test modules load this module with ``pytest_plugins`` (one stack per session, however many
    modules use it) and import it only for type checking, so pytest can still rewrite its asserts.
    """
    database_url = live_database_url(os.environ["DATABASE_URL"])
    workdir = Path(tempfile.mkdtemp(prefix="furrow-live-"))
    env = service_env(database_url=database_url, mqtt_url=mosquitto.url)
    worker = WorkerProcess(
        env=worker_env(database_url=database_url, mqtt_url=mosquitto.url, client_id=f"furrow-live-{os.getpid()}"),
        log=workdir / "ingest.log",
    )
    daphne = Daphne(env=env, port=free_port(), log=workdir / "daphne.log")
    try:
        worker.start_and_wait()
        daphne.start()
        yield LiveStack(mosquitto, database_url, env, worker, daphne, workdir)
    finally:
        daphne.stop()
        if worker.alive():
            worker.terminate()
        shutil.rmtree(workdir, ignore_errors=True)  # a failing test has printed the logs' tails already


# --- the browser, watched for Content-Security-Policy violations -------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Runs before the page's own scripts: every violation also reaches the console, where it is collected.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`
    + ` at ${e.sourceFile}:${e.lineNumber} (${(e.sample || "").slice(0, 80)})`);
});
"""


def is_csp_violation(text: str) -> bool:
    return text.startswith(("CSP violation:", "Refused to")) or "Content Security Policy" in text


class WatchedBrowser:
    """Chromium whose pages record every Content-Security-Policy violation they report."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.violations: list[str] = []

    def new_page(self, **kwargs: Any) -> Any:
        page = self.browser.new_page(**kwargs)
        page.add_init_script(CSP_LISTENER)
        page.on("console", self._console)
        return page

    def _console(self, message: Any) -> None:
        if is_csp_violation(message.text):
            self.violations.append(f"{message.location.get('url', '?')}: {message.text}")


@pytest.fixture(scope="module")
def _chromium_process() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: the browser tests need Debian's chromium (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def chromium(_chromium_process: Any) -> Iterator[WatchedBrowser]:
    """Headless Chromium; the test fails if any of its pages reported a CSP violation."""
    watched = WatchedBrowser(_chromium_process)
    yield watched
    assert watched.violations == [], "Content-Security-Policy violations:\n" + "\n".join(watched.violations)


# --- seeding, run inside the subprocess ----------------------------------------------------------


def _seed_live_farm(request: dict[str, Any]) -> dict[str, Any]:
    """A farm with one soil probe, a manager of it and a user of another farm, each with a password.

    The probe's id never equals its farm's: a message naming one where the other belongs must not
    pass by coincidence (a fresh database numbers both from 1).
    """
    from django.contrib.auth import get_user_model

    from farm.models import Role
    from farm.services import farm_create, membership_set
    from sensors.models import DeviceKind
    from sensors.services import device_register

    tag, password = request["tag"], request["password"]
    other = farm_create(name=f"Other {tag}", slug=f"other-{tag}")
    farm = farm_create(name=f"Live {tag}", slug=f"live-{tag}")
    kind = DeviceKind.objects.get(slug="soil-probe")
    device = device_register(uid=f"live-{tag}", name=f"Probe {tag}", farm=farm, kind=kind)
    if device.pk == farm.pk:
        device = device_register(uid=f"live-{tag}-2", name=f"Probe {tag} (2)", farm=farm, kind=kind)
    users = get_user_model().objects
    manager = users.create_user(username=f"manager-{tag}", password=password)
    outsider = users.create_user(username=f"outsider-{tag}", password=password)
    membership_set(farm=farm, user=manager, role=Role.MANAGER)
    membership_set(farm=other, user=outsider, role=Role.MANAGER)
    return {
        "farm": farm.pk,
        "device": device.pk,
        "uid": device.uid,
        "sensors": {s.key: s.pk for s in device.sensors.all()},
        "manager": manager.username,
        "outsider": outsider.username,
    }


def _seed_demo(request: dict[str, Any]) -> dict[str, Any]:
    """The demo farm of ``make run`` (Brookside) and its owner, as ``seed_demo`` makes them."""
    from farm.devstack.demo import demo_seed
    from sensors.models import Sensor

    seeded = demo_seed(username=request["username"], password=request["password"])
    sensors = Sensor.objects.filter(device__farm=seeded.farm).select_related("device")
    return {
        "farm": seeded.farm.pk,
        "slug": seeded.farm.slug,
        "sensors": {f"{s.device.uid}/{s.key}": s.pk for s in sensors},
        "devices": {s.device.uid: s.device_id for s in sensors},
    }


def _seed_alert_rules_delete(request: dict[str, Any]) -> dict[str, Any]:
    """Delete the farm's alert rules whose name starts with ``prefix``: what an earlier, failed run left."""
    from alerts.models import AlertRule

    deleted, _ = AlertRule.objects.filter(farm__slug=request["farm"], name__startswith=request["prefix"]).delete()
    return {"deleted": deleted}


def _seed_episode(request: dict[str, Any]) -> dict[str, Any]:
    """A resolved episode of the farm's rule ``rule`` on ``sensor`` from ``start`` to ``end`` (epoch s); or, with
    ``delete``, that episode removed again (other tests read the farm's alerts)."""
    from datetime import UTC, datetime

    from alerts.models import AlertEpisode, AlertRule

    if request.get("delete"):
        deleted, _ = AlertEpisode.objects.filter(pk=request["delete"]).delete()
        return {"deleted": deleted}
    rule = AlertRule.objects.get(farm__slug=request["farm"], name=request["rule"])
    episode = AlertEpisode.objects.create(
        rule=rule,
        sensor_id=request["sensor"],
        started_at=datetime.fromtimestamp(request["start"], tz=UTC),
        ended_at=datetime.fromtimestamp(request["end"], tz=UTC),
        end_reason="cleared",
        worst_value=request.get("worst"),
    )
    return {"episode": episode.pk}


SEEDERS = {
    "live_farm": _seed_live_farm,
    "demo": _seed_demo,
    "alert_rules_delete": _seed_alert_rules_delete,
    "episode": _seed_episode,
}


def _main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "farm.settings_test")
    import django

    django.setup()
    request = json.loads(sys.stdin.read())
    print(json.dumps(SEEDERS[request["what"]](request)))


if __name__ == "__main__" and sys.argv[1:] == ["seed"]:
    _main()
