"""Strict readers for settings that come from the environment.

Every helper names the variable in its error so that a bad deploy stops at
start-up with a message an operator can act on, rather than later with a
traceback from deep inside a library.
"""

from __future__ import annotations

import os
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """A configuration value is missing or malformed."""


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    env = os.environ if environ is None else environ
    value = env.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    value = _raw(name, environ)
    if value:
        return value
    if default is None:
        raise ConfigError(f"{name} is required but not set")
    return default


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, environ)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false, 1/0, yes/no, on/off), got {value!r}")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, environ)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {number}")
    return number


def env_float(name: str, default: float, *, minimum: float = 0.0, environ: Mapping[str, str] | None = None) -> float:
    value = _raw(name, environ)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not minimum <= number < float("inf"):
        raise ConfigError(f"{name} must be a finite number of at least {minimum}, got {value!r}")
    return number


def env_list(name: str, default: list[str], *, environ: Mapping[str, str] | None = None) -> list[str]:
    value = _raw(name, environ)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def _redacted(value: str) -> str:
    """The URL with any password replaced, fit for an error message that ends up in logs."""
    parts = urlsplit(value)
    try:
        password = parts.password
    except ValueError:
        password = None
    if not password:
        return value
    return parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@", 1)).geturl()


def env_url(
    name: str,
    default: str | None,
    *,
    schemes: tuple[str, ...],
    environ: Mapping[str, str] | None = None,
) -> str:
    value = env_str(name, default, environ=environ)
    parts = urlsplit(value)
    shown = _redacted(value)
    if parts.scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{name} must start with one of {allowed}, got {shown!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigError(f"{name} has an invalid port: {shown!r}") from None
    # A unix:// URL names a socket path instead of a host (redis-py's unix:///run/redis.sock).
    has_socket_path = parts.scheme == "unix" and parts.path not in ("", "/")
    if not parts.hostname and not parts.query and not has_socket_path:
        raise ConfigError(f"{name} has no host: {shown!r}")
    return value


def redis_database(url: str | None) -> int:
    """The database number a Redis URL selects (``/3`` or ``?db=3``); 0 when it names none."""
    if not url:
        return 0
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    number = query.get("db") or (parts.path.strip("/") if parts.scheme in ("redis", "rediss") else "")
    return int(number) if number.isdigit() else 0


def env_timezone(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    value = env_str(name, default, environ=environ)
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name} must be an IANA time zone such as Europe/London, got {value!r}") from None
    return value


# --- EMAIL_URL ------------------------------------------------------------------------------

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"
_EMAIL_OPTIONS = ("tls", "ssl", "timeout")


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """Django's ``EMAIL_*`` settings, as ``EMAIL_URL`` gives them."""

    backend: str
    host: str = ""
    port: int = 25
    user: str = ""
    password: str = ""
    use_tls: bool = False
    use_ssl: bool = False
    timeout: int = 10
    file_path: str = ""


def email_settings(name: str, value: str) -> EmailSettings:
    """The mail settings one URL names; a malformed one raises ConfigError naming ``name``.

    - ``smtp://user:pass@host:port`` — SMTP; STARTTLS when ``?tls=1``, on by default on port 587
      (the default port). ``?tls=0`` turns it off (a relay on a private network, port 25).
    - ``smtps://user:pass@host:port`` or ``smtp://…?ssl=1`` — TLS from the first byte (default port 465).
    - ``?timeout=N`` — seconds before a send gives up (default 10).
    - ``file:///path/to/dir`` — each message written as a file (a local sink); ``console://`` — to stdout.

    The user and password are percent-decoded (``%40`` for ``@`` in a user name). Unknown
    options are errors rather than silently ignored.
    """
    parts = urlsplit(value)
    shown = _redacted(value)
    if parts.scheme == "console":
        return EmailSettings(backend=CONSOLE_BACKEND)
    if parts.scheme == "file":
        if not parts.path or parts.path == "/":
            raise ConfigError(f"{name} file:// needs a directory, e.g. file:///var/lib/furrow/mail; got {shown!r}")
        return EmailSettings(backend=FILE_BACKEND, file_path=unquote(parts.path))
    if parts.scheme not in ("smtp", "smtps"):
        raise ConfigError(f"{name} must start with smtp://, smtps://, file:// or console://, got {shown!r}")
    if not parts.hostname:
        raise ConfigError(f"{name} has no host: {shown!r}")
    tls, ssl, timeout = _email_options(name, parts.query, shown)
    implicit = parts.scheme == "smtps" or bool(ssl)
    try:
        port = parts.port or (465 if implicit else 587)
    except ValueError:
        raise ConfigError(f"{name} has an invalid port: {shown!r}") from None
    starttls = (port == 587 and not implicit) if tls is None else tls
    if implicit and starttls:
        raise ConfigError(f"{name} asks for both implicit TLS (smtps:// or ssl=1) and STARTTLS (tls=1): {shown!r}")
    return EmailSettings(
        backend=SMTP_BACKEND,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        use_tls=starttls,
        use_ssl=implicit,
        timeout=timeout,
    )


def _email_options(name: str, query: str, shown: str) -> tuple[bool | None, bool | None, int]:
    """``tls`` and ``ssl`` (None when not given) and ``timeout`` from the URL's query.

    Each is read by the strict helpers under the label ``EMAIL_URL option tls`` and so on,
    so an error names both the variable and the option.
    """
    given = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(given.keys() - set(_EMAIL_OPTIONS))
    if unknown:
        raise ConfigError(f"{name} has an unknown option {unknown[0]!r} (known: tls, ssl, timeout): {shown!r}")
    labelled = {f"{name} option {key}": value for key, value in given.items()}
    tls, ssl = (
        env_bool(f"{name} option {key}", False, environ=labelled) if key in given else None for key in ("tls", "ssl")
    )
    timeout = env_int(f"{name} option timeout", 10, minimum=1, maximum=600, environ=labelled)
    return tls, ssl, timeout


def env_email(name: str = "EMAIL_URL", *, environ: Mapping[str, str] | None = None) -> EmailSettings | None:
    """The mail settings from ``EMAIL_URL``, or None when it is unset or blank."""
    value = _raw(name, environ)
    return email_settings(name, value) if value else None
