"""``python manage.py seed_demo``: the demo farm (once) and the demo login (every time)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from farm.devstack.demo import DemoKindMissing, demo_seed


class Command(BaseCommand):
    help = (
        "Create the demo farm Brookside Farm with its fields, devices and 90 days of history unless it exists, "
        "and make the demo user a superuser owning it. Safe to run on every start."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument(
            "--password-file",
            type=Path,
            help="File holding the demo user's password (make run keeps it in var/demo_password). "
            "Without it a random password is set and printed.",
        )
        parser.add_argument(
            "--no-history",
            action="store_true",
            help="Create the demo farm without its 90 days of past readings (seeded once, with the farm).",
        )

    def handle(self, *args: Any, username: str, password_file: Path | None, no_history: bool, **options: Any) -> None:
        password = self._password(password_file)
        try:
            seed = demo_seed(username=username, password=password, history=not no_history)
        except DemoKindMissing as exc:
            raise CommandError(str(exc)) from None
        verb = "Created" if seed.created else "Kept"
        self.stdout.write(f"{verb} the demo farm {seed.farm.name!r}; {username!r} is its owner.")
        if seed.history is not None:
            self.stdout.write(seed.history.line())
        if password_file is None:
            self.stdout.write(f"Password for {username!r}: {password}")

    def _password(self, path: Path | None) -> str:
        if path is None:
            return secrets.token_urlsafe(12)
        try:
            password = Path(path).read_text().strip()
        except OSError as exc:
            raise CommandError(f"cannot read the password file {path}: {exc.strerror}") from None
        if not password:
            raise CommandError(f"the password file {path} is empty")
        return password
