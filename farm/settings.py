"""Django settings for Furrow, read from the environment only (docs/architecture.md §2).

Every value comes through the strict helpers in ``farm.env``: a malformed
value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF

from farm.env import (
    ConfigError,
    env_bool,
    env_email,
    env_float,
    env_int,
    env_list,
    env_str,
    env_timezone,
    env_url,
    redis_database,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("FURROW_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
if DEBUG:
    SECRET_KEY = env_str("SECRET_KEY", "insecure-development-key-only-used-with-DEBUG-on")
else:
    SECRET_KEY = env_str("SECRET_KEY")
    if len(SECRET_KEY) < 50:
        raise ConfigError("SECRET_KEY must be at least 50 characters long when DEBUG is off")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and "*" in ALLOWED_HOSTS:
    # '*' would accept any Host header, and with it any host's own Origin on the WebSocket.
    raise ConfigError("ALLOWED_HOSTS must not contain '*' when DEBUG is off")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
TIME_ZONE = env_timezone("TIME_ZONE", "UTC")
USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = "en-gb"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "farm",
    "sensors",
    "dashboard",
    "history",
    "outbox",
    "alerts",
    "notifications",
]
# daphne's app only swaps `runserver` for an ASGI one, and it installs Twisted's reactor in
# every process that loads Django: ~35 MB in each ingest, store and Celery process. The web
# server is the `daphne` command (make run, docker/); the app is loaded for runserver only.
if sys.argv[1:2] == ["runserver"]:
    INSTALLED_APPS.insert(0, "daphne")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Above WhiteNoise, so static files carry the policy too (an SVG opened on its own is a page).
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Below WhiteNoise: every response Django makes, none of the (hashed, long-cached) static files.
    "farm.middleware.private_no_store",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "farm.urls"
ASGI_APPLICATION = "farm.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "notifications.context_processors.bell",  # the unread count in the header
            ],
        },
    },
]

# --- Services -------------------------------------------------------------

DATABASE_URL = env_url("DATABASE_URL", None, schemes=("postgres", "postgresql"))
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True),
}
DATABASES["default"]["ENGINE"] = "django.db.backends.postgresql"
# An unreachable (not refusing) host must not hang requests and /healthz forever.
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", None, schemes=("redis", "rediss", "unix"))
# The live lane: Redis pub/sub. A group is one Redis channel, and each daphne process fans a
# message out to its own sockets of that group: one Redis message per group and process, not
# one per socket (measured: publish -> browser p99 at 100 dashboards of one farm 190 -> ~120 ms,
# docs/benchmarks.md). At most once, like every channel layer: the farm sequence numbers
# mend what is lost (docs/architecture.md §6).
# Pub/sub channels are global to a Redis server, unlike keys: the prefix names REDIS_URL's
# database, so that two deployments (or a `make run` and the tests) on one server stay apart.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            # redis-py's 5 s default socket timeout would cut a quiet subscriber's read.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
            "prefix": f"furrow:{redis_database(REDIS_URL)}:asgi:",
        },
    },
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "furrow",
    },
}

MQTT_URL = env_url("MQTT_URL", None, schemes=("mqtt", "mqtts", "ws", "wss"))
MQTT_CA_FILE = env_str("MQTT_CA_FILE", "")

# --- Celery ---------------------------------------------------------------

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
# Dashboard (issue 4): mark devices offline that missed their interval by a margin.
CELERY_BEAT_SCHEDULE["sensors-offline-sweep"] = {
    "task": "sensors.tasks.sweep_offline_devices",
    "schedule": 60.0,
}
# Forget dead letters and skipped-field counts older than INGEST_RECORDS_RETENTION_DAYS.
CELERY_BEAT_SCHEDULE["sensors-purge-ingest-records"] = {
    "task": "sensors.tasks.purge_ingest_records",
    "schedule": 3600.0,
}

# The transactional outbox (docs/architecture.md §1): the sweep drains what a lost nudge left.
CELERY_BEAT_SCHEDULE["outbox-sweep"] = {
    "task": "outbox.tasks.sweep_outbox",
    "schedule": env_float("OUTBOX_SWEEP_SECONDS", 30.0, minimum=1.0),
}
# Alerts (issue 14): pending → firing, no data, device offline, reminders.
CELERY_BEAT_SCHEDULE["alerts-sweep"] = {
    "task": "alerts.tasks.sweep_alerts",
    "schedule": env_float("ALERTS_SWEEP_SECONDS", 30.0, minimum=1.0),
}
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 8, minimum=1, maximum=100)
OUTBOX_RETRY_SECONDS = env_int("OUTBOX_RETRY_SECONDS", 10, minimum=1)
OUTBOX_RETENTION_HOURS = env_int("OUTBOX_RETENTION_HOURS", 168, minimum=1)

# --- History (issue 10): partitioned readings and their retention --------------

# Months per readings partition (1 = monthly). Changing it affects partitions made from then on.
READINGS_PARTITION_MONTHS = env_int("READINGS_PARTITION_MONTHS", 1, minimum=1, maximum=12)
# Partitions kept ready beyond the current one (at migrate and by a beat task every 6 hours).
READINGS_PARTITIONS_AHEAD = env_int("READINGS_PARTITIONS_AHEAD", 3, minimum=1, maximum=36)
# Days of raw readings to keep; whole partitions older than this are dropped. Unset or 0: keep
# forever. Hourly and daily rollups are never dropped.
READINGS_RAW_RETENTION = env_int("READINGS_RAW_RETENTION", 0, minimum=0)
CELERY_BEAT_SCHEDULE["sensors-reading-partitions"] = {
    "task": "sensors.tasks.maintain_reading_partitions",
    "schedule": 6 * 3600.0,
}
# Rollups (sensors/history/rollups.py): ingest logs dirty hours, this refresh recomputes them.
# A bucket is right at most this long (plus the refresh's own time) after its batch commits.
ROLLUPS_REFRESH_SECONDS = env_float("ROLLUPS_REFRESH_SECONDS", 10.0, minimum=1.0)
CELERY_BEAT_SCHEDULE["sensors-refresh-rollups"] = {
    "task": "sensors.tasks.refresh_rollups",
    "schedule": ROLLUPS_REFRESH_SECONDS,
}

# --- Ingest (issue: MQTT ingest) -----------------------------------------

INGEST_CLIENT_ID = env_str("INGEST_CLIENT_ID", "furrow-ingest-1")
INGEST_SHARE_GROUP = env_str("INGEST_SHARE_GROUP", "")
# Part of the topic filter $share/<group>/…: '/', '+', '#' or spaces would change what it means.
if INGEST_SHARE_GROUP and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", INGEST_SHARE_GROUP):
    raise ConfigError(
        f"INGEST_SHARE_GROUP must be 1-64 of A-Z, a-z, 0-9, '-', '_' (it becomes $share/<group>/…), "
        f"got {INGEST_SHARE_GROUP!r}"
    )
INGEST_SOURCES = env_list("INGEST_SOURCES", ["native", "chirpstack", "ttn"])
_UNKNOWN_SOURCES = set(INGEST_SOURCES) - {"native", "chirpstack", "ttn"}
if _UNKNOWN_SOURCES:
    raise ConfigError(
        f"INGEST_SOURCES may list native, chirpstack, ttn; unknown: {', '.join(sorted(_UNKNOWN_SOURCES))}"
    )
INGEST_BATCH_SIZE = env_int("INGEST_BATCH_SIZE", 5000, minimum=1, maximum=100_000)
INGEST_BATCH_MS = env_int("INGEST_BATCH_MS", 200, minimum=1, maximum=60_000)
# The live push (after-commit notifiers) runs at most this often, on the batches committed meanwhile.
INGEST_NOTIFY_INTERVAL_MS = env_int("INGEST_NOTIFY_INTERVAL_MS", 50, minimum=0, maximum=10_000)
INGEST_MAX_PAYLOAD = env_int("INGEST_MAX_PAYLOAD", 64 * 1024, minimum=256)
INGEST_MAX_FUTURE_SECONDS = env_int("INGEST_MAX_FUTURE_SECONDS", 300, minimum=0)
INGEST_RETENTION_DAYS = env_int("INGEST_RETENTION_DAYS", 400, minimum=1)
INGEST_SESSION_EXPIRY = env_int("INGEST_SESSION_EXPIRY", 7 * 24 * 3600, minimum=60)
INGEST_STATS_INTERVAL = env_float("INGEST_STATS_INTERVAL", 5.0, minimum=0.1)
# 3.1.1 by default: the embedded amqtt demo broker speaks only 3.1.1.
INGEST_MQTT_VERSION = env_str("INGEST_MQTT_VERSION", "3.1.1")
if INGEST_MQTT_VERSION not in {"3.1.1", "5"}:
    raise ConfigError(f"INGEST_MQTT_VERSION must be 3.1.1 or 5, got {INGEST_MQTT_VERSION!r}")
# Messages received but not yet committed; at this many the worker stops reading from the
# broker (memory stays bounded while PostgreSQL is down). Match the broker's inflight window.
INGEST_MAX_PENDING = env_int("INGEST_MAX_PENDING", 20_000, minimum=1, maximum=1_000_000)
if INGEST_MAX_PENDING < INGEST_BATCH_SIZE:
    raise ConfigError(
        f"INGEST_MAX_PENDING ({INGEST_MAX_PENDING}) must be at least INGEST_BATCH_SIZE ({INGEST_BATCH_SIZE})"
    )
# Payload bytes received but not yet committed; at this many the worker also stops reading
# (INGEST_MAX_PENDING alone would allow 20,000 × 64 KiB = 1.3 GB of large payloads).
INGEST_MAX_PENDING_BYTES = env_int("INGEST_MAX_PENDING_BYTES", 64 * 1024 * 1024, minimum=64 * 1024)
# Decode and store in a child process, so that the MQTT client's process spends its core on
# receiving (see sensors/ingest/storeproc.py). Off: one process, for a machine with one core.
INGEST_STORE_PROCESS = env_bool("INGEST_STORE_PROCESS", True)
# Watch the broker's own dropped-messages counter ($SYS/broker/publish/messages/dropped on
# Mosquitto) beside the worker, and report a rise in the log, /healthz and the admin
# (sensors/ingest/brokerwatch.py). Off: no second MQTT connection.
INGEST_BROKER_WATCH = env_bool("INGEST_BROKER_WATCH", True)
# Sensors a device may get beyond its kind's metrics, from keys its kind does not list;
# further new keys are skipped with a reason and the device shows as needing review.
INGEST_MAX_EXTRA_METRICS = env_int("INGEST_MAX_EXTRA_METRICS", 32, minimum=0, maximum=10_000)
# Dead letters and skipped-field counts not seen for this many days are purged (hourly).
INGEST_RECORDS_RETENTION_DAYS = env_int("INGEST_RECORDS_RETENTION_DAYS", 30, minimum=1)

# --- Security ---------------------------------------------------------------

HTTPS = env_bool("HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
# Preload commits the whole domain and its subdomains to HTTPS in browsers for months and is
# hard to undo, so it is the operator's explicit choice; with it off, Django's reminder
# (security.W021) is silenced rather than shown on every deploy check.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD or not HTTPS else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# Content-Security-Policy (django-csp; Django 5.2 has none of its own). Scripts, styles, images
# and the WebSocket come from this origin only ('self' covers ws:/wss: to it in CSP Level 3
# browsers); no inline script, no eval, no plugins, no framing, no style attributes (scripts set
# styles through the CSSOM, which CSP does not govern; README, "Content-Security-Policy").
# Plotly.js (static/vendor/plotly) adds <style> elements: empty ones it then fills through the
# CSSOM (not subject to CSP), and MapLibre's stylesheet, bundled for map traces we never draw.
# Hashes admit exactly those; tests/test_web_headers.py recomputes them from the vendored bundle.
PLOTLY_STYLE_HASHES = [
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",  # the empty string
    "'sha256-ji27qzEtxXZW+7dun6UwjHXJ18e6WAin1VvNtkzIE/o='",  # MapLibre's CSS in plotly.js 4.1.1 (basic)
]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF, *PLOTLY_STYLE_HASHES],
        # Our templates carry no style="" (classes; el.style from scripts), but Plotly.js writes
        # style attributes in markup it builds (hover labels): an attribute cannot read the page
        # the way an injected <style> rule can, and <style> elements stay locked to two hashes.
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "manifest-src": [SELF],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "object-src": [NONE],
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "farm-list"
LOGOUT_REDIRECT_URL = "login"

# --- Static files -----------------------------------------------------------

STATIC_URL = "/static/"
# Every page uses {% static %}, so only hashed names are needed: halves collectstatic
# (whitenoise would otherwise brotli-compress the Plotly bundle twice).
WHITENOISE_KEEP_ONLY_HASHED_FILES = True
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if env_bool("FURROW_PLAIN_STATIC", False)
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Logging ----------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django": {"level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL}},
}

# --- Team, accounts and login throttling (issue 11) -----------------------------------------
# Kept in one block, apart from the security settings above, so they merge cleanly.

INSTALLED_APPS += ["axes"]
# Axes last: it must see the login attempt after authentication and sessions are set up.
MIDDLEWARE += ["farm.visits.FarmVisitMiddleware", "axes.middleware.AxesMiddleware"]
AUTHENTICATION_BACKENDS = [
    # Axes first: a locked-out (username, address) pair is refused before the password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    # Farm roles as object permissions: user.has_perm("farm.manage_team", farm) (farm/permissions.py).
    "farm.permissions.FarmRoleBackend",
]

# The fifth wrong password in a row from one address for one username locks that pair out
# for LOGIN_LOCKOUT_MINUTES, after which the count starts again. A guesser gets
# five tries per cool-off instead of thousands a minute, and because the lock is on the pair,
# someone elsewhere cannot lock the real user out of their own address; a password reset
# clears it at once (farm/views_account.py).
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=100)
AXES_COOLOFF_TIME = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=24 * 60) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_USERNAME_FORM_FIELD = "username"
AXES_VERBOSE = False
# Axes logs every successful login at INFO ("deleted 0 failed attempts"); lockouts are WARNING.
LOGGING["loggers"]["axes"] = {"level": "WARNING"}  # type: ignore[index]
# Behind a TLS proxy the client's address is the proxy's last X-Forwarded-For hop.
AXES_IPWARE_PROXY_COUNT = 1 if env_bool("BEHIND_TLS_PROXY", False) else None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if env_bool("BEHIND_TLS_PROXY", False) else ["REMOTE_ADDR"]
)

# Mail: invitations, password resets and email notifications. EMAIL_URL names the server in
# one value (smtp://user:pass@host:587, smtps://…:465, ?tls=1/?ssl=1/?timeout=N; file:///dir,
# console://) — farm/env.py email_settings. Without it, the older EMAIL_HOST, EMAIL_PORT, …
# still work (a documented fallback); with neither, messages are written as files to
# EMAIL_FILE_PATH (var/mail/ by default) — the local sink `make run` uses. Both set is an error.
EMAIL_TIMEOUT = 10
_email = env_email("EMAIL_URL")
EMAIL_HOST = env_str("EMAIL_HOST", "")
if _email is not None and EMAIL_HOST:
    raise ConfigError("EMAIL_URL and EMAIL_HOST are both set: keep EMAIL_URL (it names the whole server)")
if _email is not None:
    EMAIL_BACKEND = _email.backend
    EMAIL_HOST, EMAIL_PORT, EMAIL_TIMEOUT = _email.host, _email.port, _email.timeout
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = _email.user, _email.password
    EMAIL_USE_TLS, EMAIL_USE_SSL = _email.use_tls, _email.use_ssl
    if _email.file_path:
        EMAIL_FILE_PATH = _email.file_path
elif EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", EMAIL_PORT == 587)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", EMAIL_PORT == 465)
    EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
    if EMAIL_USE_TLS and EMAIL_USE_SSL:
        raise ConfigError("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on")
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Furrow <furrow@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# How long an invitation link works; resending issues a new link with a fresh period.
FARM_INVITATION_DAYS = env_int("FARM_INVITATION_DAYS", 7, minimum=1, maximum=90)
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_HOURS", 24, minimum=1, maximum=24 * 7) * 3600

# --- Notifications (issue 9) -------------------------------------------------------------------
# Kept in one block so it merges cleanly. Links in messages are absolute, from SITE_URL.
SITE_URL = env_url("SITE_URL", "http://localhost:8000", schemes=("http", "https"))
# A failing channel is tried this many times, waiting NOTIFY_RETRY_SECONDS × 2^(n-1) (at most
# an hour) between tries; then the delivery is marked failed with the last reason.
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 6, minimum=1, maximum=50)
NOTIFY_RETRY_SECONDS = env_int("NOTIFY_RETRY_SECONDS", 30, minimum=1)
# Storm grouping: after a message about a farm, further events of that farm within this many
# seconds reach each channel as one grouped message at the window's end.
NOTIFY_GROUP_SECONDS = env_int("NOTIFY_GROUP_SECONDS", 60, minimum=1, maximum=3600)
NOTIFY_TIMEOUT_SECONDS = env_int("NOTIFY_TIMEOUT_SECONDS", 10, minimum=1, maximum=120)
# Sends what is due and whose task was lost (Redis down at commit, a long quiet-hours hold).
CELERY_BEAT_SCHEDULE["notifications-sweep"] = {
    "task": "notifications.tasks.sweep_deliveries",
    "schedule": env_float("NOTIFY_SWEEP_SECONDS", 30.0, minimum=1.0),
}
