"""Getting the database and files ready, run in a child process that has the app's environment.

One Django start-up does all of it: check that every Procfile command exists,
migrate, collect static files (only when they changed: compressing them all
takes seconds), and seed the demo farm and login.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.finders import get_finders
from django.core.management import CommandError, call_command, get_commands

from farm.devstack.config import DevstackError
from farm.devstack.procfile import explain_missing, manage_commands

FINGERPRINT_NAME = ".furrow-static-fingerprint"


def check_commands(processes: dict[str, str]) -> None:
    """Fail with a clear message, before anything starts, if a Procfile process runs a command that does not exist."""
    available = get_commands()
    missing = {name: cmd for name, cmd in manage_commands(processes).items() if cmd not in available}
    if missing:
        raise DevstackError(explain_missing(missing, processes, what="the management command"))


def static_fingerprint() -> str:
    """A digest of every static source file's name, size and mtime, and of the storage backend."""
    entries = [settings.STORAGES["staticfiles"]["BACKEND"]]
    for finder in get_finders():
        for path, storage in finder.list([]):
            info = os.stat(storage.path(path))
            entries.append(f"{path}\0{info.st_size}\0{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()


def collect_static() -> bool:
    """Run collectstatic unless nothing changed since the last run; returns whether it ran."""
    marker = Path(settings.STATIC_ROOT) / FINGERPRINT_NAME
    fingerprint = static_fingerprint()
    if marker.exists() and marker.read_text() == fingerprint:
        return False
    call_command("collectstatic", interactive=False, verbosity=0)
    marker.write_text(fingerprint)
    return True


def prepare(*, processes: dict[str, str], password_file: Path) -> None:
    check_commands(processes)
    try:
        call_command("migrate", interactive=False, verbosity=1)
        if collect_static():
            print("Collected static files.", flush=True)
        call_command("seed_demo", password_file=password_file)
    except CommandError as exc:
        raise DevstackError(str(exc)) from None
