"""Settings for the test suite: production settings plus safe test-only defaults.

Service URLs still come from the environment (`make test` starts embedded
servers for any that are unset), so tests run on real PostgreSQL and Redis.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-" + "x" * 40)
os.environ.setdefault("HTTPS", "false")
os.environ.setdefault("FURROW_PLAIN_STATIC", "true")

from farm.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests don't run collectstatic; serve from the finders instead of var/staticfiles.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
# Keep the suite's live messages away from those of a `make run` on the same Redis database.
_live_prefix = f"furrow-test:{redis_database(REDIS_URL)}:asgi:"  # noqa: F405
CHANNEL_LAYERS = {
    "default": {
        **CHANNEL_LAYERS["default"],  # noqa: F405
        "CONFIG": {**CHANNEL_LAYERS["default"]["CONFIG"], "prefix": _live_prefix},  # type: ignore[dict-item]  # noqa: F405
    }
}
