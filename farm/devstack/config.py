"""Plain functions behind the dev stack: data directory, secrets, ports and the children's environment."""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from farm.env import ConfigError, env_int

BASE_DIR = Path(__file__).resolve().parent.parent.parent
LOCALHOST = "127.0.0.1"
URL_VARS = ("DATABASE_URL", "REDIS_URL", "MQTT_URL")
DEFAULT_WEB_PORT = 8000
APP_DEFAULTS = {
    "DEBUG": "false",
    # Plain http on localhost: secure-only cookies would make logging in impossible.
    "HTTPS": "false",
    "ALLOWED_HOSTS": "localhost,127.0.0.1,[::1]",
}


class DevstackError(Exception):
    """A start-up problem the user can act on; printed as a message, never as a traceback."""


class PortInUse(DevstackError):
    def __init__(self, port: int, what: str, hint: str) -> None:
        super().__init__(f"port {port} ({what}) is already in use on {LOCALHOST}: {hint}")
        self.port = port


def var_dir(environ: Mapping[str, str]) -> Path:
    """Where embedded services keep their data and the stack its secrets (``FURROW_VAR_DIR``, default ``var/``)."""
    raw = environ.get("FURROW_VAR_DIR", "").strip()
    return Path(raw).expanduser().resolve() if raw else BASE_DIR / "var"


def missing_urls(environ: Mapping[str, str]) -> list[str]:
    """The service URLs that are unset (or empty): the ones that get an embedded server."""
    return [name for name in URL_VARS if not environ.get(name, "").strip()]


def read_or_create_secret(path: Path, *, nbytes: int = 32) -> str:
    """Read a secret kept in ``path``, creating it (mode 0600) the first time."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        return value
    value = secrets.token_urlsafe(nbytes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def port_in_use(port: int, host: str = LOCALHOST) -> bool:
    """True when something already listens on ``host:port``.

    SO_REUSEADDR matches what servers (Twisted/daphne, PostgreSQL, Valkey)
    set, so a socket lingering in TIME_WAIT does not count as in use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise DevstackError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return False


def ensure_port_free(port: int, what: str, hint: str) -> None:
    if port_in_use(port):
        raise PortInUse(port, what, hint)


def free_port(host: str = LOCALHOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_setting(environ: Mapping[str, str], name: str, default: int) -> int:
    """A port from the environment; 0 means "any free port"."""
    return env_int(name, default, minimum=0, maximum=65535, environ=environ)


def web_port(environ: Mapping[str, str]) -> int:
    return env_int("PORT", DEFAULT_WEB_PORT, minimum=1, maximum=65535, environ=environ)


def process_selection(environ: Mapping[str, str]) -> list[str] | None:
    """``FURROW_PROCESSES=web,worker`` runs only those Procfile entries; unset runs them all."""
    raw = environ.get("FURROW_PROCESSES", "").strip()
    return [name.strip() for name in raw.split(",") if name.strip()] or None


def app_environment(
    environ: Mapping[str, str],
    *,
    urls: Mapping[str, str],
    var: Path,
    secret_key: str,
    port: int,
) -> dict[str, str]:
    """The environment of every app process: the service URLs plus safe local defaults.

    Values the user set win over the defaults, so ``DEBUG=true make run`` or a
    wider ``ALLOWED_HOSTS`` still work; the settings module is always the real
    one (a caller such as pytest may have exported the test settings).
    """
    env = dict(environ)
    env.update(urls)
    for name, value in {**APP_DEFAULTS, "SECRET_KEY": secret_key}.items():
        if not env.get(name, "").strip():
            env[name] = value
    env["PORT"] = str(port)
    env["FURROW_VAR_DIR"] = str(var)
    if not env.get("SITE_URL", "").strip():  # links in notifications point at this stack
        env["SITE_URL"] = f"http://{LOCALHOST}:{port}"
    if not (env.get("EMAIL_URL", "").strip() or env.get("EMAIL_HOST", "").strip()):
        # Nothing leaves the machine: mail is written to files a person can open.
        env["EMAIL_URL"] = mail_sink(var, env).as_uri()
    env["DJANGO_SETTINGS_MODULE"] = "farm.settings"
    # Children's output goes through pipes to the supervisor: without this it arrives in bursts.
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = child_path(environ)
    return env


def mail_sink(var: Path, env: Mapping[str, str]) -> Path:
    """Where ``make run`` writes mail unless EMAIL_URL or EMAIL_HOST sends it for real (EMAIL_FILE_PATH, var/mail/)."""
    chosen = env.get("EMAIL_FILE_PATH", "").strip()
    return Path(chosen).expanduser().resolve() if chosen else var / "mail"


def mail_destination(env: Mapping[str, str]) -> str:
    """For the banner: where the stack's mail goes."""
    url = env.get("EMAIL_URL", "").strip()
    if url.startswith("file://"):
        return f"written to {url.removeprefix('file://')}/ (nothing is sent; open the newest file)"
    return "sent through EMAIL_URL" if url else "sent through EMAIL_HOST"


def child_path(environ: Mapping[str, str]) -> str:
    """PATH for the app processes: this virtualenv's programs (daphne, celery, python) first."""
    return os.pathsep.join([str(Path(sys.executable).parent), environ.get("PATH", os.defpath)])


def suite_environment(environ: Mapping[str, str], *, urls: Mapping[str, str]) -> dict[str, str]:
    """The environment for pytest: the service URLs, and the settings module left to pyproject.toml.

    ``farm/__init__`` (imported to run this module) sets DJANGO_SETTINGS_MODULE
    to the production settings; pytest-django would prefer it over the test
    settings, so it is dropped. Pass ``--ds`` to pytest to choose others.
    """
    env = {name: value for name, value in environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    env.update(urls)
    return env


SETTINGS_FILE = "settings.env"
# What a command in another terminal needs to reach the running stack's services and start Django.
SHARED_SETTINGS = (*URL_VARS, "SECRET_KEY")


def write_stack_settings(var: Path, env: Mapping[str, str]) -> Path:
    """Write ``var/settings.env``: the running stack's URLs (with passwords) and secret key, mode 0600."""
    path = var / SETTINGS_FILE
    lines = ["# Written by `make run` at every start; manage.py reads what is not set in the environment."]
    lines += [f"{name}={env[name]}" for name in SHARED_SETTINGS if env.get(name)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def read_stack_settings(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, sep, value in pairs if sep and name.strip() in SHARED_SETTINGS}


def use_stack_settings(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """For ``manage.py`` in another terminal: fill in unset settings from the running stack's file.

    Only names that are unset (or empty) are filled, so an exported variable
    always wins. Returns the names it filled in.
    """
    filled = []
    for name, value in read_stack_settings(var_dir(environ) / SETTINGS_FILE).items():
        if not environ.get(name, "").strip():
            environ[name] = value
            filled.append(name)
    return filled


def acquire_var_lock(var: Path) -> IO[str]:
    """Hold ``var/devstack.lock`` for the life of the stack, so two stacks never share one data directory.

    A POSIX record lock belongs to this process alone: the processes it forks
    (honcho's readers) do not inherit it, so if this process is killed the lock
    goes with it and the next start can clean up what it left.
    """
    var.mkdir(parents=True, exist_ok=True)
    handle = (var / "devstack.lock").open("a+")
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DevstackError(
            f"another Furrow stack (pid {holder}) is using {var}; stop it first, "
            "or set FURROW_VAR_DIR to another directory"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


__all__ = [
    "ConfigError",
    "DevstackError",
    "PortInUse",
    "acquire_var_lock",
    "app_environment",
    "child_path",
    "ensure_port_free",
    "free_port",
    "missing_urls",
    "port_in_use",
    "port_setting",
    "process_selection",
    "read_or_create_secret",
    "read_stack_settings",
    "suite_environment",
    "use_stack_settings",
    "var_dir",
    "web_port",
    "write_stack_settings",
]
