"""Putting the stack together: embedded services, preparation, supervised app processes, the test run."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from honcho.manager import Manager
from honcho.printer import Message, Printer

from farm.devstack import embedded
from farm.devstack.config import (
    BASE_DIR,
    LOCALHOST,
    DevstackError,
    acquire_var_lock,
    app_environment,
    child_path,
    ensure_port_free,
    free_port,
    mail_destination,
    missing_urls,
    port_setting,
    process_selection,
    read_or_create_secret,
    suite_environment,
    var_dir,
    web_port,
    write_stack_settings,
)
from farm.devstack.procfile import exec_form, explain_missing, load_procfile, missing_programs, select_processes

DEMO_USERNAME = "demo"
STOPPED_BY_SIGNAL = {130, 143}
BANNER_WIDTH = 64


@dataclass(frozen=True)
class ServiceSpec:
    """How to start the embedded counterpart of one URL variable."""

    url_var: str
    name: str
    subdir: str
    port_var: str
    default_port: int
    launch: Callable[..., embedded.Embedded]


SERVICES = (
    ServiceSpec("DATABASE_URL", "PostgreSQL", "pg", "FURROW_PG_PORT", 15432, embedded.postgres_launch),
    ServiceSpec("REDIS_URL", "Valkey", "valkey", "FURROW_REDIS_PORT", 16379, embedded.valkey_launch),
    ServiceSpec("MQTT_URL", "amqtt", "mqtt", "FURROW_MQTT_PORT", 11883, embedded.amqtt_launch),
)


def emit(text: str) -> None:
    """Print, unless the terminal is gone (a closed window): shutting down matters more than telling."""
    with suppress(OSError, ValueError):
        print(text, flush=True)


def say(message: str) -> None:
    emit(f"furrow: {message}")


class SturdyPrinter(Printer):
    """honcho's printer, minus the exception when the terminal has gone away mid-run."""

    def write(self, message: Message) -> None:
        with suppress(OSError, ValueError):
            super().write(message)


def service_port(spec: ServiceSpec, environ: Mapping[str, str], *, fixed: bool) -> int:
    """The port for an embedded service: the configured one (checked), or any free one."""
    port = port_setting(environ, spec.port_var, spec.default_port) if fixed else 0
    if port == 0:
        return free_port()
    hint = f"set {spec.port_var} to another port (0 picks a free one), or {spec.url_var} to use your own server"
    ensure_port_free(port, f"embedded {spec.name}", hint)
    return port


def start_services(
    url_vars: list[str], data: Path, environ: Mapping[str, str], stack: ExitStack, *, fixed_ports: bool
) -> dict[str, embedded.Embedded]:
    """Start the embedded servers for ``url_vars``; each one's stop is registered on ``stack`` as it starts."""
    servers: dict[str, embedded.Embedded] = {}
    password = read_or_create_secret(data / "service_password") if url_vars else ""
    for spec in SERVICES:
        if spec.url_var in url_vars:
            port = service_port(spec, environ, fixed=fixed_ports)
            log = data / "log" / f"{spec.subdir}.log"
            server = spec.launch(data / spec.subdir, port=port, password=password, log_path=log)
            stack.callback(_stop_and_say, server)
            servers[spec.url_var] = server
    # Launched together, waited for together: amqtt's Python start-up overlaps PostgreSQL's.
    for server in servers.values():
        embedded.wait_ready(server)
        if server.name == "PostgreSQL":
            embedded.postgres_ensure_database(server.port, password)
    return servers


def _stop_and_say(server: embedded.Embedded) -> None:
    embedded.stop(server)
    say(f"stopped {server.name}")


def run_prepare(env: Mapping[str, str], processes: dict[str, str], password_file: Path) -> None:
    """Migrate, collect static files and seed the demo, in one Django process with the app's environment."""
    argv = [sys.executable, "-m", "farm.devstack", "prepare", "--processes", ",".join(processes),
            "--password-file", str(password_file)]  # fmt: skip
    if subprocess.run(argv, env=dict(env), cwd=BASE_DIR, check=False).returncode != 0:  # noqa: S603
        raise DevstackError("preparation failed (see above); the app processes were not started")


def banner(
    *, url: str, password: str, var: Path, servers: dict[str, embedded.Embedded], seconds: float, mail: str = ""
) -> str:
    """What every start prints once the web server listens: where to go and how to log in."""
    rule = "─" * BANNER_WIDTH
    lines = [
        rule,
        f"  Furrow is running at {url}   (ready in {seconds:.1f} s)",
        f"  Login: {DEMO_USERNAME} / {password}",
        f"  Admin: {url}admin/",
    ]
    if mail:
        lines += [f"  Mail: {mail}", f"  Notifications: the bell in the header, {url}account/notifications/inbox/"]
    lines += [f"  {s.name}: {s.display_url}  (embedded)" for s in servers.values()]
    lines += [f"  Data in {var}.  Stop with Ctrl-C.", rule]
    return "\n".join(lines)


def _when_listening(port: int, then: Callable[[], None], done: threading.Event) -> None:
    while not done.is_set():
        if embedded.tcp_listening(port):
            then()
            return
        done.wait(0.2)


def supervise(processes: dict[str, str], env: Mapping[str, str], *, port: int, on_ready: Callable[[], None]) -> int:
    """Run the Procfile's processes under honcho until one exits or we get SIGINT/SIGTERM; stop them all.

    honcho starts each in its own session and, on a signal or when any one
    exits, sends SIGTERM to every process group, then SIGKILL after 5 s.
    """
    manager = Manager(SturdyPrinter(sys.stdout, colour=sys.stdout.isatty()))
    for name, command in processes.items():
        manager.add_process(name, exec_form(command), env=dict(env), cwd=str(BASE_DIR))
    done = threading.Event()
    threading.Thread(target=_when_listening, args=(port, on_ready, done), daemon=True).start()
    try:
        manager.loop()
    except BaseException:
        _stop_apps_without_honcho()
        raise
    finally:
        done.set()
    # honcho reports 130/143 when we asked it to stop: a clean stop, not a failure.
    code = int(manager.returncode or 0)
    return 0 if code in STOPPED_BY_SIGNAL else code


def _stop_apps_without_honcho() -> None:
    """If honcho's loop broke off, it can no longer stop the apps: stop them, then its output readers.

    The readers may be blocked on a queue nobody reads any more; they would
    keep this process from exiting, so they are killed once their apps are gone.
    """
    embedded.stop_processes(embedded.app_processes(), signal.SIGTERM, embedded.APP_STOP_TIMEOUT)
    for reader in multiprocessing.active_children():
        reader.kill()
        reader.join(timeout=1)


def run(environ: Mapping[str, str], *, started: float) -> int:
    """``make run``: the whole app on embedded services where no URL is set, until Ctrl-C."""
    var, port = var_dir(environ), web_port(environ)
    processes = select_processes(load_procfile(BASE_DIR / "Procfile"), process_selection(environ))
    missing = missing_programs(processes, child_path(environ))
    if missing:
        raise DevstackError(explain_missing(missing, processes, what="the program"))
    record = var / "devstack.pids"
    with acquire_var_lock(var), ExitStack() as stack, shield_on_exit():
        embedded.stop_leftovers(record, say)
        # Registered first, so it runs last: a record that survives means we did not stop cleanly.
        stack.callback(record.unlink, missing_ok=True)
        ensure_port_free(port, "web", f"start on another one with PORT={port + 1} make run")
        servers = start_services(missing_urls(environ), var, environ, stack, fixed_ports=True)
        embedded.record_servers(record, servers.values())
        urls = {name: server.url for name, server in servers.items()}
        secret_key = read_or_create_secret(var / "secret_key", nbytes=50)
        env = app_environment(environ, urls=urls, var=var, secret_key=secret_key, port=port)
        write_stack_settings(var, env)
        password = read_or_create_secret(var / "demo_password", nbytes=12)
        run_prepare(env, processes, var / "demo_password")

        def on_ready() -> None:
            # Recorded first: should this process be killed outright, the next start stops what it left.
            embedded.record_descendants(record)
            url, seconds = f"http://{LOCALHOST}:{port}/", time.monotonic() - started
            mail = mail_destination(env)
            emit(banner(url=url, password=password, var=var, servers=servers, seconds=seconds, mail=mail))

        return supervise(processes, env, port=port, on_ready=on_ready)


@contextmanager
def shield_on_exit() -> Iterator[None]:
    """Enter last so it exits first: from then on the servers stop without being interrupted."""
    try:
        yield
    finally:
        shield_signals()


def shield_signals() -> None:
    """While the servers stop, a second Ctrl-C must not cut the shutdown short and strand them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def run_tests(environ: Mapping[str, str], pytest_args: list[str]) -> int:
    """``make test``: pytest on the services named by the environment, embedded throwaway ones for the rest."""
    with ExitStack() as stack, shield_on_exit():
        url_vars = missing_urls(environ)
        urls: dict[str, str] = {}
        if url_vars:
            data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="furrow-test-")))
            servers = start_services(url_vars, data, environ, stack, fixed_ports=False)
            urls = {name: server.url for name, server in servers.items()}
            say("test services: " + ", ".join(f"{s.name} on port {s.port}" for s in servers.values()))
        return run_pytest(pytest_args, suite_environment(environ, urls=urls))


def run_pytest(pytest_args: list[str], env: Mapping[str, str]) -> int:
    """Run pytest as a child and pass on SIGTERM; a terminal's Ctrl-C reaches pytest directly.

    Ignoring SIGINT here lets pytest finish its own interrupt handling (summary,
    test database teardown) before the services it uses are stopped.
    """
    child = subprocess.Popen([sys.executable, "-m", "pytest", *pytest_args], env=dict(env), cwd=BASE_DIR)  # noqa: S603
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    return child.wait()
