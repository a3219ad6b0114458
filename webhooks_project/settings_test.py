"""Settings for the test suite: the real settings, pointed at test-only resources.

Tests use their own embedded Redis (var/test-redis, started by tests/conftest.py, which
also exports REDIS_URL to the workers it starts) and a file-backed SQLite test database,
so real RQ workers started as subprocesses see the same data as the test.
"""

from __future__ import annotations

import os
from pathlib import Path

from webhooks_project import embedded_redis

_var = Path(os.environ.get("VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "dGVzdC1rZXktb25seS1mb3ItdGhlLXRlc3Qtc3VpdGU=")
TEST_REDIS_DIR = _var / "test-redis"
os.environ.setdefault("REDIS_URL", embedded_redis.url_for(TEST_REDIS_DIR))

from webhooks_project.settings import *  # noqa: E402, F403
from webhooks_project.settings import DATABASES, VAR_DIR  # noqa: E402

if "sqlite" in DATABASES["default"]["ENGINE"]:
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

WEBHOOK_REQUIRE_HTTPS = False
# Loopback only: receivers in tests listen on 127.0.0.1 / ::1, and nothing else is opened.
WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
# MD5 keeps users' passwords fast in tests; PBKDF2 verifies client secrets hashed before
# lib.hashers existed; lib.hashers hashes client secrets now.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "lib.hashers.RandomSecretHasher",
]
if not os.environ.get("EMAIL_URL"):  # a fault test points a worker at a real mail server
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# The test client speaks plain http.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
WHITENOISE_AUTOREFRESH = True
# Tests send an inspector more than a minute's worth of requests at once (its 100-request
# cap); the rate limit's own test sets a small rate.
INSPECTOR_CATCH_RATE = (10_000, 60)
