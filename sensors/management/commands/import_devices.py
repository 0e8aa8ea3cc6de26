"""Register devices in bulk from a CSV file with the columns farm,field,uid,name,kind."""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError
from tqdm import tqdm

from sensors import services
from sensors.importing import COLUMNS, ImportFileError, ImportPlan, load_directory, plan_import, read_rows

PROGRESS_MIN_ROWS = 200  # below this the import is over before a bar would tell anyone anything


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def describe(plan: ImportPlan) -> str:
    text = f"{_plural(len(plan.new_devices), 'device')} with {_plural(plan.sensor_count, 'sensor')}"
    if plan.updated_devices:
        text += f", updating {_plural(len(plan.updated_devices), 'registered device')}"
    if plan.new_farms or plan.new_fields:
        text += f", creating {_plural(len(plan.new_farms), 'farm')} and {_plural(len(plan.new_fields), 'field')}"
    return text


class Command(BaseCommand):
    help = (
        f"Register devices from a CSV file with a header naming the columns {','.join(COLUMNS)}. "
        "Farms and fields are matched by slug or name, kinds by slug or name. All or nothing: "
        "any bad row and nothing is written."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", type=Path, help="CSV file (UTF-8) with a header line")
        parser.add_argument(
            "--create-missing", action="store_true", help="create farms and fields that do not exist yet"
        )
        parser.add_argument(
            "--update",
            action="store_true",
            help="a row whose uid is registered updates that device's name, farm, field and kind "
            "(instead of being an error)",
        )
        parser.add_argument("--dry-run", action="store_true", help="check the file and report, write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        plan = self._plan(path, create_missing=options["create_missing"], update=options["update"])
        if plan.errors:
            for error in sorted(plan.errors, key=lambda e: e.line):
                self.stderr.write(str(error))
            rows = len({error.line for error in plan.errors})
            raise CommandError(f"{_plural(rows, 'bad row')} in {path}; nothing was imported.")
        if options["dry_run"]:
            self._report_new_places(plan)
            self.stdout.write(f"Dry run: would import {describe(plan)}. Nothing was written.")
            return
        self._apply(plan)
        self._report_new_places(plan)
        self.stdout.write(self.style.SUCCESS(f"Imported {describe(plan)}."))

    def _plan(self, path: Path, *, create_missing: bool, update: bool) -> ImportPlan:
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                rows, errors = read_rows(handle)
        except FileNotFoundError:
            raise CommandError(f"{path}: no such file") from None
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
        except ImportFileError as exc:
            raise CommandError(f"{path}: {exc}") from None
        directory = load_directory(uids=[row.uid for row in rows])
        plan = plan_import(rows, directory, create_missing=create_missing, update=update)
        plan.errors[:0] = errors
        return plan

    def _apply(self, plan: ImportPlan) -> None:
        total = len(plan.devices)
        with tqdm(total=total, unit="device", file=sys.stderr, disable=total < PROGRESS_MIN_ROWS) as bar:
            try:
                services.devices_import(plan=plan, progress=bar.update)
            except IntegrityError as exc:
                # Another process registered one of these uids (or farms) while we were checking.
                raise CommandError(f"the database refused the import, nothing was written: {exc}") from None

    def _report_new_places(self, plan: ImportPlan) -> None:
        for slug, name in plan.new_farms.items():
            self.stdout.write(f"new farm {name!r} (slug {slug})")
        for (farm_slug, slug), name in plan.new_fields.items():
            self.stdout.write(f"new field {name!r} (slug {slug}) on farm {farm_slug}")
