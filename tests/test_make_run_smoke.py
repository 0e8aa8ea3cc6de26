"""Smoke test of ``make run``: the whole stack on embedded services, used the way a newcomer uses it.

It runs ``python -m farm.devstack run`` with no service URLs and a fresh data
directory, waits for ``/healthz``, logs in with the printed credentials through
the login form (a real CSRF round trip), sees the demo farm, presses Ctrl-C
(SIGINT to the process group, as a terminal does) and checks that no process
of the stack is left.

A second test starts the stack four times on one data directory and checks
that the demo is lossless — every reading the simulator had acknowledged is
stored, after a first start and after a restart — and that every
``manage.py`` command in the README works as written beside it.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import queue
import re
import shlex
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
import psycopg
import pytest

from farm.devstack.config import BASE_DIR, SETTINGS_FILE, free_port, read_stack_settings

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
        _a_demo_alert_rings_the_bell_and_mails_the_local_sink(opener, base, var, output)

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


def _a_demo_alert_rings_the_bell_and_mails_the_local_sink(
    opener: urllib.request.OpenerDirector, base: str, var: Path, output: Output
) -> None:
    """The README's tour, step 9: a low battery reading fires the demo's info rule; the demo user's
    in-app and email channels (seeded by make run) bring it to the bell and to var/mail/."""
    sink = var / "mail"
    assert f"Mail: written to {sink}/" in output.text()
    env = {name: value for name, value in os.environ.items() if name not in SCRUBBED} | {"FURROW_VAR_DIR": str(var)}
    command = [sys.executable, "manage.py", "send_test_reading", "brookside-pump-battery", "battery=11"]
    result = subprocess.run(command, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with opener.open(base + "account/notifications/inbox/", timeout=10) as response:
            page = response.read().decode()
        mails = [f.read_text(errors="replace") for f in sink.iterdir()] if sink.exists() else []
        if "Pump battery low firing" in page and any("Pump battery low firing" in m for m in mails):
            break
        time.sleep(1)
    else:
        pytest.fail(f"the demo alert never reached the bell and {sink}:\n{output.text()}")
    unread = re.search(r'aria-label="Notifications, (\d+) unread"', page)
    assert unread is not None, page[:2000]
    assert int(unread.group(1)) >= 1, page[:2000]


# --- Lossless demo, README commands ------------------------------------------------------------------

SIM_READINGS = re.compile(r"readings in acknowledged messages (\d+) \((\d+) history, (\d+) live\)")
SEEDED = re.compile(r"Seeded (\d+) days of history from [^:]+: ([\d,]+) readings")
README = BASE_DIR / "README.md"


def readme_manage_commands(text: str) -> list[list[str]]:
    """Every ``manage.py`` command in the README's ``sh`` blocks, as argv (continuation lines joined)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if "manage.py" in line:
                commands.append(shlex.split(line))
    return commands


def test_the_readme_has_manage_commands_to_run():
    commands = readme_manage_commands(README.read_text())
    names = {argv[argv.index("manage.py") + 1] for argv in commands}
    assert {"import_devices", "send_test_reading"} <= names, commands


class Stack:
    """One ``make run`` on a given data directory, started and stopped with Ctrl-C."""

    def __init__(self, var: Path, processes: str | None = None) -> None:
        self.var, self.port = var, free_port()
        self.base = f"http://127.0.0.1:{self.port}/"
        env = _environment(var, self.port)
        if processes:
            env["FURROW_PROCESSES"] = processes
        self.process = subprocess.Popen(
            [sys.executable, "-m", "farm.devstack", "run"], cwd=BASE_DIR, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        self.output = Output(self.process)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        self.output.wait_for(LOGIN, deadline)
        _wait_for_health(self.base, deadline)

    def stop(self) -> str:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            code = self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            pytest.fail("the stack did not stop within 90 s of Ctrl-C:\n" + self.output.text())
        text = self.output.text()
        assert code == 0, text
        return text

    def database_url(self) -> str:
        return read_stack_settings(self.var / SETTINGS_FILE)["DATABASE_URL"]


def _readings(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM sensors_reading").fetchone()
    return int(row[0]) if row else 0


def _settled_readings(url: str, *, at_least: int = 1, quiet: float = 4.0, timeout: float = 120.0) -> int:
    """The readings count once it has reached ``at_least`` and not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = _readings(url)
        if count != last:
            last, since = count, time.monotonic()
        elif count >= at_least and time.monotonic() - since >= quiet:
            return count
        time.sleep(0.5)
    pytest.fail(f"the readings never settled at {at_least} or more (last {last})")


def _past_backfill(url: str, *, at_least: int, timeout: float = 120.0) -> int:
    """Wait until the simulator's day of history is in: ``at_least`` readings, then only live ones trickling in."""
    deadline = time.monotonic() + timeout
    previous = _readings(url)
    while time.monotonic() < deadline:
        time.sleep(3)
        count = _readings(url)
        if count >= at_least and count - previous < 60:  # the demo's live reports: a few a second
            return count
        previous = count
    pytest.fail(f"the backfill never finished (at {previous} readings)")


def _simulated(output: str) -> tuple[int, int, int]:
    match = SIM_READINGS.search(output)
    assert match, "the simulator printed no summary:\n" + output[-5000:]
    total, history, live = (int(n) for n in match.groups())
    return total, history, live


def _run_readme_commands(var: Path) -> list[str]:
    """Run each README ``manage.py`` command in a fresh environment, as a newcomer's second terminal would."""
    env = {name: value for name, value in os.environ.items() if name not in SCRUBBED}
    env["FURROW_VAR_DIR"] = str(var)  # the one variable the README asks for when var/ is not the default
    outputs = []
    for argv in readme_manage_commands(README.read_text()):
        start = argv.index("manage.py")
        command = [sys.executable, *argv[start:]]
        result = subprocess.run(command, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
                                check=False)  # fmt: skip
        assert result.returncode == 0, f"{shlex.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout)
    return outputs


@pytest.mark.timeout(900)
def test_the_demo_stores_every_simulated_reading_across_restarts_and_the_readme_commands_work(tmp_path):
    var = tmp_path / "var"

    # 1. A first start: the seeded weeks of history, the simulator's day of history and its live reports.
    first = Stack(var)
    first.wait_ready()
    days, seeded = SEEDED.findall(first.output.text())[0]
    seeded_rows = int(seeded.replace(",", ""))
    assert int(days) >= 60
    assert seeded_rows > 100_000, "weeks of history for the history page and the summaries"
    url = first.database_url()
    _past_backfill(url, at_least=seeded_rows + 1000)
    total_1, history_1, _ = _simulated(first.stop())
    assert history_1 > 1000, "a day of history for the demo farm"

    # 2. Only web and ingest: what the broker still held for the worker is delivered now; nothing else arrives.
    drain = Stack(var, processes="web,ingest")
    drain.wait_ready()
    assert not SEEDED.findall(drain.output.text()), "the history is seeded once, with the farm"
    url = drain.database_url()  # each start picks free ports
    total_1 += seeded_rows  # the seeded history ends where the simulator's begins: no reading is in both
    assert _settled_readings(url, at_least=total_1) == total_1, "every acknowledged reading, stored once"
    outputs = _run_readme_commands(var)
    assert any(out.startswith("Published ") and "Stored:" in out for out in outputs), outputs
    after_readme = _settled_readings(url)
    drain.stop()

    # 3. A restart of the whole demo, then 4. a drain again.
    again = Stack(var)
    again.wait_ready()
    time.sleep(10)
    total_3, _, live_3 = _simulated(again.stop())
    drain = Stack(var, processes="web,ingest")
    drain.wait_ready()
    stored = _settled_readings(drain.database_url(), at_least=after_readme + live_3)
    drain.stop()
    # Live readings are all new; the republished history only fills the hours the demo was down.
    assert after_readme + live_3 <= stored <= after_readme + total_3
