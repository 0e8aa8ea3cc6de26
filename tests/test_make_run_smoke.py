"""Smoke test of ``make run``: the whole stack on embedded services, used the way a newcomer uses it.

It runs ``python -m farm.devstack run`` with no service URLs and a fresh data
directory, waits for ``/healthz``, logs in with the printed credentials through
the login form (a real CSRF round trip), sees the demo farm, presses Ctrl-C
(SIGINT to the process group, as a terminal does) and checks that no process
of the stack is left.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from farm.devstack.config import BASE_DIR, free_port

pytestmark = pytest.mark.slow

START_TIMEOUT = 150.0
# What a newcomer's shell does not have, but a pytest process may: the test settings export some.
SCRUBBED = {"DATABASE_URL", "REDIS_URL", "MQTT_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE", "DEBUG", "HTTPS",
            "ALLOWED_HOSTS", "FURROW_PLAIN_STATIC", "FURROW_PROCESSES"}  # fmt: skip
LOGIN = re.compile(r"Login: (\S+) / (\S+)")


class Output:
    """The stack's combined output, read on a thread so the pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(process,), daemon=True).start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], deadline: float) -> re.Match[str]:
        for seen in self.lines:
            if match := pattern.search(seen):
                return match
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                pytest.fail("the stack exited before it was ready:\n" + self.text())
            self.lines.append(line)
            if match := pattern.search(line):
                return match
        pytest.fail(f"no {pattern.pattern!r} within the time limit:\n" + self.text())

    def text(self) -> str:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return "".join(self.lines[-150:])
            if line is not None:
                self.lines.append(line)


def _environment(var: Path, port: int) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in SCRUBBED}
    # Free ports for the embedded services: a developer's own `make run` may hold the defaults.
    ports = {"FURROW_PG_PORT": "0", "FURROW_REDIS_PORT": "0", "FURROW_MQTT_PORT": "0"}
    return env | ports | {"FURROW_VAR_DIR": str(var), "PORT": str(port)}


def _wait_for_health(base: str, deadline: float) -> dict:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "healthz", timeout=5) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    pytest.fail("/healthz never answered 200")


def _csrf_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "the login page has no CSRF token"
    return match.group(1)


def _log_in(base: str, username: str, password: str) -> urllib.request.OpenerDirector:
    """Log in through the form like a browser: GET the page (cookie + token), POST it back."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(base + "login/", timeout=10) as response:
        token = _csrf_token(response.read().decode())
    form = {"username": username, "password": password}

    forged = urllib.parse.urlencode(form).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(base + "login/", data=forged, timeout=10)
    assert refused.value.code == 403, "a login POST without the CSRF token must be refused"

    data = urllib.parse.urlencode(form | {"csrfmiddlewaretoken": token}).encode()
    with opener.open(base + "login/", data=data, timeout=10) as response:
        assert response.url == base, f"login did not land on the farm list but on {response.url}"
    return opener


def _naming(var: Path) -> list[psutil.Process]:
    """Processes whose command line names the data directory (PostgreSQL, amqtt, celery beat)."""
    return [
        proc
        for proc in psutil.process_iter(["cmdline"])
        if proc.pid != os.getpid() and any(str(var) in arg for arg in proc.info["cmdline"] or [])
    ]


def _stack_processes(root: psutil.Process, var: Path) -> list[psutil.Process]:
    """The supervisor's whole tree, and anything else that names the data directory."""
    found = {proc.pid: proc for proc in [root, *root.children(recursive=True), *_naming(var)]}
    return list(found.values())


def _alive(procs: list[psutil.Process]) -> list[str]:
    left = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            continue
    return left


@pytest.mark.timeout(300)
def test_make_run_serves_the_demo_farm_and_ctrl_c_leaves_nothing_running(tmp_path):
    var, port = tmp_path / "var", free_port()
    base = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT
    process = subprocess.Popen(
        [sys.executable, "-m", "farm.devstack", "run"],
        cwd=BASE_DIR,
        env=_environment(var, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so the "Ctrl-C" below reaches only the stack
    )
    output = Output(process)
    tree: list[psutil.Process] = []
    try:
        username, password = output.wait_for(LOGIN, deadline).groups()
        assert (username, password) == ("demo", (var / "demo_password").read_text().strip())
        health = _wait_for_health(base, deadline)
        assert health["status"] == "ok", health

        opener = _log_in(base, username, password)
        with opener.open(base, timeout=10) as response:
            assert "Brookside Farm" in response.read().decode()

        tree = _stack_processes(psutil.Process(process.pid), var)
        commands = " ".join(" ".join(p.cmdline()) for p in tree)
        for part in ("postgres", "valkey-server", "amqtt", "daphne", "celery"):
            assert part in commands, f"{part} is not running:\n{commands}"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            code = process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail("the stack did not stop within 90 s of Ctrl-C:\n" + output.text())

    assert code == 0, output.text()
    left = _alive(tree + _naming(var))
    assert left == [], "left running after Ctrl-C:\n" + "\n".join(left)
    assert "furrow: stopped PostgreSQL" in output.text()
    assert not (var / "devstack.pids").exists(), "a clean stop forgets the pids it recorded"
