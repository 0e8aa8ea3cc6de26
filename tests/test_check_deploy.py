"""Production-like settings pass Django's deploy checks, and static files are compressed and cache-busted."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

from tests.test_settings_env import REPO, production_env


def manage(*args: str, **env_overrides: str | None) -> subprocess.CompletedProcess[str]:
    env = production_env(**env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_check_deploy_reports_no_warnings_with_production_values():
    result = manage("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=secrets.token_urlsafe(64), HTTPS="true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_does_fail_when_https_is_off():
    # The control for the test above: the same command does see insecure settings.
    result = manage("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=secrets.token_urlsafe(64), HTTPS="false")
    assert result.returncode != 0
    assert "security.W008" in result.stderr  # SECURE_SSL_REDIRECT
    assert "security.W012" in result.stderr  # SESSION_COOKIE_SECURE


def test_collectstatic_writes_hashed_and_compressed_files(tmp_path: Path):
    result = manage("collectstatic", "--noinput", "-v0", FURROW_VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr

    static_root = tmp_path / "staticfiles"
    manifest = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    hashed_css = manifest["css/furrow.css"]
    assert re.fullmatch(r"css/furrow\.[0-9a-f]{12}\.css", hashed_css)
    for name in (hashed_css, manifest["js/furrow.js"], manifest["img/icons.svg"]):
        assert (static_root / name).exists()
        assert (static_root / f"{name}.gz").exists()
    assert (static_root / f"{hashed_css}.br").exists()

    # Templates then point at the hashed name, so browsers may cache it forever.
    url = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.templatetags.static import static; print(static('css/furrow.css'))",
        FURROW_VAR_DIR=str(tmp_path),
    )
    assert url.stdout.strip() == f"/static/{hashed_css}", url.stderr
