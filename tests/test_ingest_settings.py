"""The ingest settings fail loudly on a malformed value, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")} | env
    return subprocess.run(
        [sys.executable, "-c", "import farm.settings as s; print(s.INGEST_SHARE_GROUP, s.INGEST_MAX_PENDING_BYTES)"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("group", ["a/b", "farm+", "x#", "two words", "g" * 65, "grüppe"])
def test_a_share_group_that_would_change_the_topic_filter_stops_start_up(group):
    loaded = load_settings(INGEST_SHARE_GROUP=group)

    assert loaded.returncode != 0
    assert "ConfigError: INGEST_SHARE_GROUP must be 1-64 of A-Z" in loaded.stderr


def test_a_valid_share_group_and_the_byte_budget_are_read():
    loaded = load_settings(INGEST_SHARE_GROUP="furrow-ingest_2", INGEST_MAX_PENDING_BYTES="1048576")

    assert (loaded.returncode, loaded.stdout.split()) == (0, ["furrow-ingest_2", "1048576"])


def test_the_byte_budget_defaults_to_64_mib():
    assert load_settings().stdout.split()[-1] == str(64 * 1024 * 1024)
