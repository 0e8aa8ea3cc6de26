"""manage.py load_alert_rules FILE.yaml [--dry-run]: provision alert rules from a file, all or nothing."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from alerts.loading import LoadError, entries_from_yaml, entries_save


class Command(BaseCommand):
    help = "Create or update alert rules from a YAML file (matched by farm and name); all or nothing."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--dry-run", action="store_true", help="Check the file and say what would change.")

    def handle(self, *args: Any, file: Path, dry_run: bool, **options: Any) -> None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        try:
            entries = entries_from_yaml(text)
        except LoadError as exc:
            raise CommandError(f"{file}: nothing was loaded.\n" + "\n".join(exc.problems)) from None
        result = entries_save(entries, dry_run=dry_run)
        for label in result.created:
            self.stdout.write(f"create  {label}")
        for label in result.updated:
            self.stdout.write(f"update  {label}")
        summary = f"{len(result.created)} created, {len(result.updated)} updated, {len(result.unchanged)} unchanged"
        self.stdout.write(f"{summary} (dry run: nothing written)" if dry_run else summary)
