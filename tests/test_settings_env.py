"""Settings come from the environment through strict helpers; a bad value stops start-up naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from farm.env import (
    ConfigError,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    env_timezone,
    env_url,
    redis_database,
)

REPO = Path(__file__).resolve().parent.parent

# --- env_str ------------------------------------------------------------------


def test_env_str_returns_the_value_stripped():
    assert env_str("NAME", environ={"NAME": "  furrow \n"}) == "furrow"


def test_env_str_falls_back_to_the_default_when_unset_or_blank():
    assert env_str("NAME", "fallback", environ={}) == "fallback"
    assert env_str("NAME", "fallback", environ={"NAME": "   "}) == "fallback"


def test_env_str_without_default_names_the_missing_variable():
    with pytest.raises(ConfigError, match=r"^SECRET_KEY is required"):
        env_str("SECRET_KEY", environ={})


# --- env_bool -----------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " True "])
def test_env_bool_reads_true_spellings(raw):
    assert env_bool("DEBUG", False, environ={"DEBUG": raw}) is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off", ""])
def test_env_bool_reads_false_spellings(raw):
    assert env_bool("DEBUG", True, environ={"DEBUG": raw}) is False


def test_env_bool_uses_the_default_when_unset():
    assert env_bool("DEBUG", False, environ={}) is False
    assert env_bool("DEBUG", True, environ={}) is True


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled", "tru"])
def test_env_bool_refuses_anything_else_naming_the_variable(raw):
    with pytest.raises(ConfigError, match=rf"^DEBUG must be a boolean .*{raw!r}"):
        env_bool("DEBUG", False, environ={"DEBUG": raw})


# --- env_int ------------------------------------------------------------------


def test_env_int_parses_whole_numbers():
    assert env_int("INGEST_BATCH_SIZE", 5, environ={"INGEST_BATCH_SIZE": " 250 "}) == 250


def test_env_int_uses_the_default_when_unset_or_blank():
    assert env_int("INGEST_BATCH_SIZE", 5, environ={}) == 5
    assert env_int("INGEST_BATCH_SIZE", 5, environ={"INGEST_BATCH_SIZE": ""}) == 5


@pytest.mark.parametrize("raw", ["lots", "1.5", "1e3", "0x10"])
def test_env_int_refuses_non_integers_naming_the_variable(raw):
    with pytest.raises(ConfigError, match=r"^INGEST_BATCH_SIZE must be a whole number"):
        env_int("INGEST_BATCH_SIZE", 5, environ={"INGEST_BATCH_SIZE": raw})


def test_env_int_enforces_its_bounds():
    with pytest.raises(ConfigError, match=r"^INGEST_BATCH_SIZE must be at least 1, got 0"):
        env_int("INGEST_BATCH_SIZE", 5, minimum=1, environ={"INGEST_BATCH_SIZE": "0"})
    with pytest.raises(ConfigError, match=r"^INGEST_BATCH_SIZE must be at most 100, got 101"):
        env_int("INGEST_BATCH_SIZE", 5, maximum=100, environ={"INGEST_BATCH_SIZE": "101"})
    assert env_int("INGEST_BATCH_SIZE", 5, minimum=1, maximum=100, environ={"INGEST_BATCH_SIZE": "100"}) == 100


# --- env_float ----------------------------------------------------------------


def test_env_float_parses_numbers():
    assert env_float("INGEST_STATS_INTERVAL", 5.0, environ={"INGEST_STATS_INTERVAL": "2.5"}) == 2.5
    assert env_float("INGEST_STATS_INTERVAL", 5.0, environ={}) == 5.0


@pytest.mark.parametrize("raw", ["soon", "nan", "inf", "-1", "1,5"])
def test_env_float_refuses_malformed_negative_or_non_finite_values(raw):
    with pytest.raises(ConfigError, match=r"^INGEST_STATS_INTERVAL must be a (finite )?number"):
        env_float("INGEST_STATS_INTERVAL", 5.0, environ={"INGEST_STATS_INTERVAL": raw})


# --- env_list -----------------------------------------------------------------


def test_env_list_splits_on_commas_and_drops_blanks():
    raw = " farm.example.com, ,10.0.0.5 ,"
    assert env_list("ALLOWED_HOSTS", [], environ={"ALLOWED_HOSTS": raw}) == ["farm.example.com", "10.0.0.5"]


def test_env_list_default_is_a_copy():
    default = ["localhost"]
    value = env_list("ALLOWED_HOSTS", default, environ={})
    value.append("other")
    assert default == ["localhost"]


def test_env_list_set_but_empty_is_an_empty_list():
    assert env_list("ALLOWED_HOSTS", ["localhost"], environ={"ALLOWED_HOSTS": ""}) == []


# --- env_url ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://furrow:pw@db.example.com:5432/furrow",
        "postgres://localhost/furrow",
        "postgresql:///furrow?host=/var/run/postgresql",
    ],
)
def test_env_url_accepts_database_urls(raw):
    assert env_url("DATABASE_URL", None, schemes=("postgres", "postgresql"), environ={"DATABASE_URL": raw}) == raw


def test_env_url_accepts_a_unix_socket_path():
    raw = "unix:///run/redis/redis.sock"
    assert env_url("REDIS_URL", None, schemes=("redis", "unix"), environ={"REDIS_URL": raw}) == raw


def test_env_url_refuses_a_wrong_scheme_naming_the_variable():
    with pytest.raises(ConfigError, match=r"^DATABASE_URL must start with one of postgres://, postgresql://"):
        env_url("DATABASE_URL", None, schemes=("postgres", "postgresql"), environ={"DATABASE_URL": "mysql://h/db"})


def test_env_url_refuses_a_malformed_port():
    with pytest.raises(ConfigError, match=r"^MQTT_URL has an invalid port"):
        env_url("MQTT_URL", None, schemes=("mqtt",), environ={"MQTT_URL": "mqtt://broker:eighteen83"})


@pytest.mark.parametrize("raw", ["mqtt://", "unix://"])
def test_env_url_refuses_a_url_without_host(raw):
    with pytest.raises(ConfigError, match=r"^MQTT_URL has no host"):
        env_url("MQTT_URL", None, schemes=("mqtt", "unix"), environ={"MQTT_URL": raw})


def test_env_url_is_required_without_default():
    with pytest.raises(ConfigError, match=r"^REDIS_URL is required"):
        env_url("REDIS_URL", None, schemes=("redis",), environ={})


def test_env_url_error_never_shows_the_password():
    with pytest.raises(ConfigError) as caught:
        env_url("DATABASE_URL", None, schemes=("postgresql",), environ={"DATABASE_URL": "mysql://furrow:s3cret@h/db"})
    assert "s3cret" not in str(caught.value)
    assert "furrow:***@h" in str(caught.value)


# --- env_timezone -------------------------------------------------------------


def test_env_timezone_accepts_iana_names():
    assert env_timezone("TIME_ZONE", "UTC", environ={"TIME_ZONE": "Europe/Madrid"}) == "Europe/Madrid"
    assert env_timezone("TIME_ZONE", "UTC", environ={}) == "UTC"


@pytest.mark.parametrize("raw", ["Mars/Olympus_Mons", "GMT+25", "../etc/passwd"])
def test_env_timezone_refuses_unknown_zones_naming_the_variable(raw):
    with pytest.raises(ConfigError, match=r"^TIME_ZONE must be an IANA time zone"):
        env_timezone("TIME_ZONE", "UTC", environ={"TIME_ZONE": raw})


# --- Importing the real settings module -------------------------------------------


def production_env(**overrides: str | None) -> dict[str, str]:
    """A clean, production-like environment; ``None`` removes a variable."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "farm.settings",
        "DEBUG": "false",
        "SECRET_KEY": "prod-" + "k3y" * 20,
        "ALLOWED_HOSTS": "furrow.example.com",
        "DATABASE_URL": "postgresql://furrow@127.0.0.1:5432/furrow",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "MQTT_URL": "mqtt://127.0.0.1:1883",
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def start_django(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_settings_load_with_production_values():
    result = start_django(production_env())
    assert result.returncode == 0, result.stderr


def test_settings_load_in_debug_without_secret_key():
    result = start_django(production_env(DEBUG="true", SECRET_KEY=None, ALLOWED_HOSTS=None))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"SECRET_KEY": "too-short"}, "SECRET_KEY"),
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": "furrow.example.com,*"}, "ALLOWED_HOSTS"),
        ({"DATABASE_URL": "mysql://furrow@127.0.0.1/furrow"}, "DATABASE_URL"),
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"MQTT_URL": "mqtt://broker:port"}, "MQTT_URL"),
        ({"TIME_ZONE": "Mars/Olympus_Mons"}, "TIME_ZONE"),
        ({"INGEST_BATCH_SIZE": "lots"}, "INGEST_BATCH_SIZE"),
        ({"HTTPS": "sometimes"}, "HTTPS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"EMAIL_URL": "smtp://"}, "EMAIL_URL"),
        ({"EMAIL_URL": "smtp://mail.example.com?tsl=1"}, "EMAIL_URL"),
        ({"EMAIL_URL": "smtp://mail.example.com", "EMAIL_HOST": "mail.example.com"}, "EMAIL_URL"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_setting_stops_start_up_naming_the_variable(overrides, variable):
    result = start_django(production_env(**overrides))
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("farm.env.ConfigError: "), result.stderr
    assert variable in last_line


# --- redis_database (the live channel layer's prefix) ---------------------------


@pytest.mark.parametrize(
    ("url", "number"),
    [
        ("redis://127.0.0.1:6379/7", 7),
        ("redis://127.0.0.1:6379", 0),
        ("rediss://user:pw@redis.example:6380/12", 12),
        ("redis://127.0.0.1:6379/0?db=3", 3),
        ("unix:///run/redis.sock?db=5", 5),
        ("unix:///run/redis.sock", 0),
        (None, 0),
    ],
)
def test_redis_database_names_the_database_a_url_selects(url, number):
    assert redis_database(url) == number


def test_the_live_layer_prefix_names_the_redis_database(settings):
    # Pub/sub channels are global to a Redis server: two databases must not hear each other.
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    assert f":{redis_database(settings.REDIS_URL)}:" in prefix
