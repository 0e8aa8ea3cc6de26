"""Export readings or their rollups as CSV, like the history page's export.csv, with a progress bar."""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from farm.models import Farm
from history.forms import RESOLUTIONS, ExportQuery
from history.selectors import sensors_of_farm
from history.windows import days_window
from sensors.history.exports import ExportResolution, ExportSensor, export_lines, export_row_count


class Command(BaseCommand):
    help = (
        "Write a farm's readings (raw, or hourly/daily rollups) as CSV: the same columns as "
        "/farms/<slug>/history/export.csv. Dates are the farm's local days, --end inclusive."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--farm", required=True, help="the farm's slug")
        parser.add_argument("--sensor", type=int, action="append", required=True, help="a sensor id (repeat)")
        parser.add_argument("--start", required=True, help="first local day, YYYY-MM-DD")
        parser.add_argument("--end", required=True, help="last local day, YYYY-MM-DD (inclusive)")
        parser.add_argument("--resolution", choices=RESOLUTIONS, default="raw")
        parser.add_argument("--output", "-o", default="-", help="a file to write, or - for standard output")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")

    def handle(self, *args: Any, **options: Any) -> None:
        farm = Farm.objects.filter(slug=options["farm"]).first()
        if farm is None:
            raise CommandError(f"No farm with the slug {options['farm']!r}.")
        query = ExportQuery(
            {
                "sensor": options["sensor"],
                "start": options["start"],
                "end": options["end"],
                "resolution": options["resolution"],
            }
        )
        if not query.is_valid():
            problems = "; ".join(str(e) for errors in query.errors.values() for e in errors)
            raise CommandError(problems)
        chosen = sensors_of_farm(farm, query.cleaned_data["sensor"])
        missing = set(query.cleaned_data["sensor"]) - {s.pk for s in chosen}
        if missing:
            raise CommandError(f"Not sensors of {farm.slug}: {', '.join(map(str, sorted(missing)))}.")
        window = days_window(
            first=query.cleaned_data["start"], last=query.cleaned_data["end"], zone=ZoneInfo(farm.time_zone)
        )
        resolution: ExportResolution = query.resolution_key()  # type: ignore[assignment]
        sensors = [ExportSensor(s.pk, f"{s.device.name} / {s.label}", s.unit) for s in chosen]
        kwargs: dict[str, Any] = {
            "sensors": sensors,
            "start": window.start,
            "end": window.end,
            "resolution": resolution,
            "time_zone": farm.time_zone,
        }
        total = export_row_count(**kwargs)
        with ExitStack() as stack:
            write = (
                self._stdout
                if options["output"] == "-"
                else stack.enter_context(Path(options["output"]).open("w", encoding="utf-8")).write
            )
            bar = stack.enter_context(tqdm(total=total, unit=" rows", disable=options["no_progress"], file=sys.stderr))
            for i, chunk in enumerate(export_lines(**kwargs)):
                write("\n".join(chunk) + "\n")
                if i:  # the first chunk is the header
                    bar.update(len(chunk))

    def _stdout(self, text: str) -> int:
        self.stdout.write(text, ending="")
        return len(text)
