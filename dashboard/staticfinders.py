"""Serve Plotly.js from the installed ``plotly`` package: no CDN, nothing vendored into git.

A farm office LAN may have no internet, so the chart library is a static
file like any other. ``collectstatic`` copies it (and whitenoise compresses
it) at build time; with ``DEBUG`` on, whitenoise finds it through this finder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, overload

import plotly
from django.contrib.staticfiles import utils
from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import CheckMessage, Error
from django.core.files.storage import FileSystemStorage

PREFIX = "vendor/plotly"
FILENAME = "plotly.min.js"
STATIC_PATH = f"{PREFIX}/{FILENAME}"


def _package_data() -> Path:
    return Path(plotly.__file__).resolve().parent / "package_data"


class PlotlyFinder(BaseFinder):
    """Finds ``vendor/plotly/plotly.min.js`` in plotly's ``package_data``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=_package_data())
        self.storage.prefix = PREFIX  # type: ignore[attr-defined]  # collectstatic copies under this prefix

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        if (_package_data() / FILENAME).is_file():
            return []
        return [
            Error(
                f"{FILENAME} is missing from the installed plotly package ({_package_data()}).",
                hint="Reinstall plotly from requirements.txt.",
                id="dashboard.E001",
            )
        ]

    @overload
    def find(self, path: str, find_all: Literal[False] = False) -> str | None: ...

    @overload
    def find(self, path: str, find_all: Literal[True]) -> list[str]: ...

    def find(self, path: str, find_all: bool = False) -> str | list[str] | None:
        found = str(_package_data() / FILENAME) if path == STATIC_PATH else None
        if find_all:
            return [] if found is None else [found]
        return found

    def list(self, ignore_patterns: Iterable[str] | None) -> Iterator[tuple[str, FileSystemStorage]]:
        if not utils.matches_patterns(FILENAME, list(ignore_patterns or [])):
            yield FILENAME, self.storage
