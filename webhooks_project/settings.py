"""Settings, all from the environment (see docs/configuration.md).

Defaults run locally with no configuration: SQLite under var/ and the embedded Redis's
socket under var/redis/. Importing these settings starts nothing: `make run`
(webhooks_project/run.py), `manage.py` commands that need Redis, and the test suite start
the embedded Redis when REDIS_URL is unset. Production sets DEBUG=0, SECRET_KEY,
ALLOWED_HOSTS, DATABASE_URL and REDIS_URL.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from croniter import croniter
from django.core.exceptions import ImproperlyConfigured

from lib import files
from webhooks_project import config, embedded_redis

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(config.get_str("VAR_DIR", str(BASE_DIR / "var")))
files.private_dir(VAR_DIR)  # the database, keys and demo login: this user's only

DEBUG = config.get_bool("DEBUG", False)
SECRET_KEY = config.get_str("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY: must be set when DEBUG is off (set DEBUG=1 for local development)"
        )
    SECRET_KEY = config.DEV_SECRET_KEY
# Signing secrets are encrypted at rest with these keys (see lib/crypto.py).
FIELD_ENCRYPTION_KEYS = config.get_fernet_keys("FIELD_ENCRYPTION_KEY")
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY: must be set when DEBUG is off (it encrypts signing secrets)"
        )
    FIELD_ENCRYPTION_KEYS = [config.derive_fernet_key(SECRET_KEY)]
ALLOWED_HOSTS = config.get_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = config.get_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = config.get_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_rq",
    "axes",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI's own files, served from our static files: no CDN, works offline, pinned.
    "drf_spectacular_sidecar",
    "csp",
    "oauth2_provider",
    # The domain, lowest first: each app's models point only at the apps above it.
    "accounts",
    "catalogue",
    "endpoints",
    "deliveries",
    "tooling",
    "operations",
]

MIDDLEWARE = [
    # First, so load balancers and Prometheus reach /healthz and /metrics on each instance by
    # its address: no ALLOWED_HOSTS check, no https redirect (see operations/health.py).
    "operations.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "webhooks_project.nul.RefuseNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before the session: it adjusts the cookies and framing headers set after it.
    "webhooks_project.portal_frame.PortalFrameMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "webhooks_project.caching.PrivatePagesMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "webhooks_project.csp.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "webhooks_project.urls"
WSGI_APPLICATION = "webhooks_project.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/webhooks/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

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
            ],
        },
    },
]

DATABASES = {"default": config.get_database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}

# PgBouncer in transaction-pooling mode (`?pgbouncer=1` on DATABASE_URL): consecutive
# transactions of one connection may run on different server sessions, so nothing may
# outlive a transaction on the server. Prepared statements stay off (Django's default with
# psycopg 3, pinned here) and server-side cursors (`.iterator()`: DECLARE ... WITH HOLD)
# are off. The engine's advisory locks are transaction-scoped and it uses no LISTEN, SET or
# temporary tables; the TimeZone Django sets on connect is one of the parameters PgBouncer
# replays on every server session it lends. The backend only changes how the test database
# is dropped (webhooks_project/pgbouncer/base.py).
DATABASE_PGBOUNCER = config.pop_pgbouncer_flag("DATABASE_URL", DATABASES["default"])
if DATABASE_PGBOUNCER:
    DATABASES["default"]["ENGINE"] = "webhooks_project.pgbouncer"
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while a worker writes; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue up instead of failing with "database is locked", and our
    # backend queues them fairly across processes (see webhooks_project/sqlite/base.py).
    DATABASES["default"]["ENGINE"] = "webhooks_project.sqlite"
    DATABASES["default"]["OPTIONS"] = {
        # wal_autocheckpoint: a backstop only; the workers' sweep checkpoints every second.
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=20000;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
# Persistent connections: opening one per request (Django's default) cost the API more than
# storing the event did (a new SQLite connection runs its PRAGMAs and opens the lock file).
# Behind PgBouncer they are client connections to it, which hold no server connection
# between transactions; PgBouncer's own server connections are the ones that persist.
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = config.get_redis_url("REDIS_URL")
# Redis behind Sentinel: the clients ask these sentinels for the current master of
# REDIS_SENTINEL_MASTER on every (re)connect, so a failover needs no restart.
REDIS_SENTINELS = config.get_redis_sentinels("REDIS_SENTINELS")
REDIS_SENTINEL_MASTER = config.get_str("REDIS_SENTINEL_MASTER") or ""
REDIS_SENTINEL_DB = config.get_int("REDIS_SENTINEL_DB", 0, minimum=0)
REDIS_PASSWORD = config.get_str("REDIS_PASSWORD") or None
if REDIS_SENTINELS and REDIS_URL:
    raise ImproperlyConfigured("REDIS_SENTINELS: set either REDIS_URL or REDIS_SENTINELS, not both")
if REDIS_SENTINELS and not REDIS_SENTINEL_MASTER:
    raise ImproperlyConfigured(
        "REDIS_SENTINEL_MASTER: must name the master (Sentinel's service name) with REDIS_SENTINELS"
    )
EMBEDDED_REDIS_DIR: Path | None = None
if REDIS_URL is None and not REDIS_SENTINELS:
    # Unset: the embedded Redis's socket under VAR_DIR (started by run.py or manage.py, not here).
    EMBEDDED_REDIS_DIR = embedded_redis.directory_for(VAR_DIR)
    REDIS_URL = embedded_redis.url_for(EMBEDDED_REDIS_DIR)

RQ_QUEUES: dict[str, dict[str, object]] = {
    "default": (
        {
            "SENTINELS": REDIS_SENTINELS,
            "MASTER_NAME": REDIS_SENTINEL_MASTER,
            "DB": REDIS_SENTINEL_DB,
            "PASSWORD": REDIS_PASSWORD,
            "DEFAULT_TIMEOUT": 900,
        }
        if REDIS_SENTINELS
        else {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 900}
    )
}
RQ_SHOW_ADMIN_LINK = True
# The stock `manage.py rqworker --with-scheduler` runs the same complete worker as run_worker
# (sweep, retries, released leases), not RQ's forking default without them.
RQ = {"WORKER_CLASS": "deliveries.worker.DeliveryWorker"}

EMAIL_CONFIG = config.get_email("EMAIL_URL", "consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = config.get_str("DEFAULT_FROM_EMAIL", "webhooks@localhost")
# Seconds one SMTP exchange may take: a stalled mail server holds one e-mail job, not more.
EMAIL_TIMEOUT = config.get_int("EMAIL_TIMEOUT", 10, minimum=1)

# Delivery policy (see docs/architecture.md and docs/configuration.md).
WEBHOOK_REQUIRE_HTTPS = config.get_bool("WEBHOOK_REQUIRE_HTTPS", True)
WEBHOOK_ALLOWED_NETWORKS = config.get_networks("WEBHOOK_ALLOWED_NETWORKS")
# With ports listed, addresses that only WEBHOOK_ALLOWED_NETWORKS opens (e.g. this machine in
# `make run`) may be used on those ports only: the demo reaches its inspector, not every
# local service. Public addresses are not affected. Empty: any port.
WEBHOOK_ALLOWED_PORTS = config.get_ports("WEBHOOK_ALLOWED_PORTS")
WEBHOOK_RETRY_BASE_SECONDS = config.get_int("WEBHOOK_RETRY_BASE_SECONDS", 5, minimum=1)
WEBHOOK_RETRY_CAP_SECONDS = config.get_int("WEBHOOK_RETRY_CAP_SECONDS", 15 * 60, minimum=1)
WEBHOOK_RETRY_JITTER = 0.2
WEBHOOK_RETRY_MAX_ATTEMPTS = config.get_int("WEBHOOK_RETRY_MAX_ATTEMPTS", 200, minimum=1)
WEBHOOK_RETRY_WINDOW_SECONDS = config.get_int("WEBHOOK_RETRY_WINDOW_SECONDS", 48 * 3600, minimum=1)
# A claim outlives its slowest request by this margin before the sweep gives it back.
WEBHOOK_LEASE_MARGIN_SECONDS = config.get_int("WEBHOOK_LEASE_MARGIN_SECONDS", 30, minimum=1)
WEBHOOK_SWEEP_SECONDS = config.get_int("WEBHOOK_SWEEP_SECONDS", 1, minimum=1)
# Sends one worker process keeps in flight at once: each costs a socket on the worker's event
# loop, not a thread, so a hanging receiver holds one slot of a thousand.
WEBHOOK_MAX_IN_FLIGHT = config.get_int("WEBHOOK_MAX_IN_FLIGHT", 1000, minimum=1)
# A private CA bundle for receivers on a merchant's own network (REQUESTS_CA_BUNDLE and
# SSL_CERT_FILE are honoured too); empty: Mozilla's bundle (certifi).
WEBHOOK_CA_BUNDLE = config.get_str("WEBHOOK_CA_BUNDLE", "")
# A pump job hands over to a fresh one after this long, so other jobs (e-mails) get a turn.
WEBHOOK_PUMP_SECONDS = config.get_int("WEBHOOK_PUMP_SECONDS", 60, minimum=1)
# Fair shares of a worker's send slots: one merchant at most this fraction (the others always
# find a free slot), retries at most this fraction (first attempts always do).
WEBHOOK_MERCHANT_SHARE = config.get_fraction("WEBHOOK_MERCHANT_SHARE", 0.75)
WEBHOOK_RETRY_SHARE = config.get_fraction("WEBHOOK_RETRY_SHARE", 0.75)
# The slow lane: sends to endpoints that answered slower than WEBHOOK_SLOW_SECONDS or not at all
# in the last minute, or that have been in flight longer than that, take at most this fraction
# of a worker's slots, so healthy endpoints always find room.
WEBHOOK_SLOW_SECONDS = config.get_int("WEBHOOK_SLOW_SECONDS", 5, minimum=1)
WEBHOOK_SLOW_LANE_SHARE = config.get_fraction("WEBHOOK_SLOW_LANE_SHARE", 0.5)
# The circuit breaker: open after this many attempts in a row without an answer, for a pause
# that doubles on each failed probe up to the maximum.
WEBHOOK_BREAKER_THRESHOLD = config.get_int("WEBHOOK_BREAKER_THRESHOLD", 5, minimum=1)
WEBHOOK_BREAKER_PAUSE_SECONDS = config.get_int("WEBHOOK_BREAKER_PAUSE_SECONDS", 30, minimum=1)
WEBHOOK_BREAKER_MAX_PAUSE_SECONDS = config.get_int(
    "WEBHOOK_BREAKER_MAX_PAUSE_SECONDS", 600, minimum=1
)
WEBHOOK_AUTO_DISABLE_SECONDS = config.get_int(
    "WEBHOOK_AUTO_DISABLE_SECONDS", WEBHOOK_RETRY_WINDOW_SECONDS, minimum=1
)

# The REST API (see accounts/api.py).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.api.BearerKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.HasApiKey"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.api.KeyRateThrottle"],
    "DEFAULT_PARSER_CLASSES": [
        "accounts.api.JSONParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["accounts.api.JSONRenderer"],
    "EXCEPTION_HANDLER": "accounts.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "POS Webhooks API",
    "DESCRIPTION": (
        "Manage webhooks (request and response shapes of myPOS's webhook API), emit POS "
        "events, and inspect deliveries. Authenticate with `Authorization: Bearer <API key>`. "
        "The POS platform's operator key (`whop_...`) also manages merchants, sign-in links and "
        "operational webhooks, and acts for one merchant with a `Merchant-Id` header."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No badge from the public validator: the docs page loads nothing from elsewhere.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "accounts.api_schema.add_error_responses",
        "accounts.api_schema.add_summaries",
        "accounts.api_schema.add_merchant_header",
    ],
}
# OAuth 2.0 client credentials (myPOS: "the generated oAuth Token"): a merchant's client
# trades its id and secret at POST /api/v1/oauth/token for an expiring bearer token.
OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": config.get_int("OAUTH_TOKEN_SECONDS", 3600, minimum=60),
    "SCOPES": {"api": "The merchant's webhooks, events and deliveries"},
    "DEFAULT_SCOPES": ["api"],
    # Tokens are stored as a SHA-256 checksum only, like API keys: a leaked table signs nothing.
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    # Only the client-credentials grant is used; the rest of RFC 9700 (OAuth 2.0 Security
    # BCP) is switched on too, so `check --deploy` stays clean and nothing weaker is accepted.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
    # Client secrets are random 256-bit values: one SHA-256, as API keys (lib/hashers.py).
    # Secrets hashed before with PBKDF2 still verify and are re-hashed on their next use.
    "CLIENT_SECRET_HASHER": "sha256",
}
# Django's default hashers for people's passwords (the first one hashes new passwords),
# plus the one for OAuth client secrets, which check_password must be able to identify.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "lib.hashers.RandomSecretHasher",
]
# Failed client authentications at the token endpoint, per client id and per address,
# within a window; beyond them it answers 429 without checking the secret.
OAUTH_CLIENT_FAILURE_LIMIT = config.get_int("OAUTH_CLIENT_FAILURE_LIMIT", 10, minimum=1)
OAUTH_ADDRESS_FAILURE_LIMIT = config.get_int("OAUTH_ADDRESS_FAILURE_LIMIT", 30, minimum=1)
OAUTH_FAILURE_WINDOW_SECONDS = config.get_int("OAUTH_FAILURE_WINDOW_SECONDS", 300, minimum=1)
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
API_RATE_LIMIT = config.get_rate("API_RATE_LIMIT", "6000/minute")
# Sign-in links (operator API): how long the dashboard session they start lasts, which
# origins may frame an embedded session (CSP frame-ancestors, e.g. https://backoffice.example),
# how many links one merchant may get and how many one address may open per window.
PORTAL_SESSION_MINUTES = config.get_int("PORTAL_SESSION_MINUTES", 60, minimum=1)
PORTAL_FRAME_ANCESTORS = config.get_list("PORTAL_FRAME_ANCESTORS", [])
for _origin in PORTAL_FRAME_ANCESTORS:
    if not re.fullmatch(r"https?://[A-Za-z0-9.*:\[\]-]+", _origin):
        raise ImproperlyConfigured(
            f"PORTAL_FRAME_ANCESTORS: expected origins like https://backoffice.example, "
            f"got {_origin!r}"
        )
PORTAL_LINK_RATE_LIMIT = config.get_rate("PORTAL_LINK_RATE_LIMIT", "30/minute")
PORTAL_REDEEM_RATE_LIMIT = config.get_rate("PORTAL_REDEEM_RATE_LIMIT", "30/minute")
# Requests per operator key (the POS platform's own credential), apart from merchants'.
OPERATOR_API_RATE_LIMIT = config.get_rate("OPERATOR_API_RATE_LIMIT", "60000/minute")
# Event bodies are capped at 256 KiB; nothing else the API takes comes close to 1 MiB.
MAX_EVENT_BYTES = 256 * 1024
# JSON nested deeper than this is refused with a 400 (Python's parser would hit its
# recursion limit at about 1,000 levels, and the worker re-serialises the data).
MAX_JSON_DEPTH = config.get_int("MAX_JSON_DEPTH", 64, minimum=2)

# Per-merchant limits (see docs/security.md); staff raise them per merchant in the admin
# (the Merchant's own fields; empty means these defaults).
MERCHANT_MAX_WEBHOOKS = config.get_int("MERCHANT_MAX_WEBHOOKS", 50, minimum=1)
MERCHANT_MAX_API_KEYS = config.get_int("MERCHANT_MAX_API_KEYS", 20, minimum=1)
MERCHANT_MAX_OAUTH_CLIENTS = config.get_int("MERCHANT_MAX_OAUTH_CLIENTS", 20, minimum=1)
MERCHANT_MAX_INSPECTORS = config.get_int("MERCHANT_MAX_INSPECTORS", 20, minimum=1)
# Requests an inspector's catch URL takes per window (no login needed: the URL is public
# once shared); more are answered 429 before the body is read. Its storage is capped too.
INSPECTOR_CATCH_RATE = config.get_rate("INSPECTOR_CATCH_RATE", "60/minute")
# Events with a one-off `webhook_url`, per merchant per hour: each may be retried for 48 h.
MERCHANT_MAX_ONE_OFF_PER_HOUR = config.get_int("MERCHANT_MAX_ONE_OFF_PER_HOUR", 500, minimum=1)
# Outbound calls made while a web request waits (Send test, loyalty call-outs), at once per
# merchant across all web processes: one merchant's hanging receiver can hold at most this
# many web threads. Further calls are answered 429 at once.
MERCHANT_MAX_OUTBOUND_CALLS = config.get_int("MERCHANT_MAX_OUTBOUND_CALLS", 2, minimum=1)
# The inspector's "slow" answer waits at most this long on the web side.
INSPECTOR_SLOW_MAX_SECONDS = config.get_int("INSPECTOR_SLOW_MAX_SECONDS", 5, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
# A batch (up to 100 events, each within MAX_EVENT_BYTES) is capped at the same 1 MiB: one
# transaction stays short, and a POS with bigger events sends those one by one.
MAX_BATCH_BYTES = DATA_UPLOAD_MAX_MEMORY_SIZE

# Login lockout (django-axes, see webhooks_project/lockout.py): 5 failures for a username,
# from any address, lock it for 15 minutes; 20 failures from one address, for any usernames,
# lock that address. A success clears only that username's failures from that address. The
# address ignores X-Forwarded-For unless we run behind our own proxies.
TRUSTED_PROXY_COUNT = config.get_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
AXES_FAILURE_LIMIT = config.get_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_ADDRESS_FAILURE_LIMIT = config.get_int("LOGIN_ADDRESS_FAILURE_LIMIT", 20, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=config.get_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_HANDLER = "webhooks_project.lockout.LockoutHandler"
AXES_LOCKOUT_CALLABLE = "webhooks_project.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "webhooks_project.security.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["webhooks_project.formats"]

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# X-Forwarded-Proto says https only when our own proxy set it: without one, any client could
# claim https and be served over plain http instead of redirected.
if TRUSTED_PROXY_COUNT > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Both are hard to undo (preload lists, other hosts of the domain), so the operator opts in.
SECURE_HSTS_INCLUDE_SUBDOMAINS = config.get_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = config.get_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [
    # check --deploy warns when these are off; off is the operator's informed default here.
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]
if not DEBUG:
    SESSION_COOKIE_SECURE = config.get_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = config.get_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = config.get_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = config.get_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)

# Content-Security-Policy (django-csp): our own files only, no inline code. The docs page and
# the rq dashboard add what their third-party pages need (webhooks_project/csp.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Operations (see docs/operations.md). Delivery logs older than RETENTION_DAYS (or a
# merchant's own retention) are pruned daily at RETENTION_SCHEDULE (cron syntax, the
# scheduler's local time) by the `scheduler` process, or by `manage.py prune_deliveries`.
RETENTION_DAYS = config.get_int("RETENTION_DAYS", 30, minimum=1)
RETENTION_SCHEDULE = config.get_str("RETENTION_SCHEDULE", "17 3 * * *") or ""
if not croniter.is_valid(RETENTION_SCHEDULE):
    raise ImproperlyConfigured(
        f"RETENTION_SCHEDULE: expected a cron expression like '17 3 * * *', "
        f"got {RETENTION_SCHEDULE!r}"
    )
# /metrics answers only with this token (`Authorization: Bearer ...` or `?token=`).
METRICS_TOKEN = config.get_str("METRICS_TOKEN") or ""
# Counting deliveries by status and type reads the whole table: at most once per this long.
METRICS_CACHE_SECONDS = config.get_int("METRICS_CACHE_SECONDS", 30, minimum=0)
# /healthz wants a worker heartbeat this recent. RQ's idle workers check in every
# worker_ttl - 15 = 405 s, and a SimpleWorker not at all while it runs a job (a pump runs for
# up to a minute), so anything shorter than RQ's own expiry (420 + 60 s) flaps.
HEALTH_WORKER_MAX_AGE_SECONDS = config.get_int("HEALTH_WORKER_MAX_AGE_SECONDS", 480, minimum=1)

_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def _log_level(name: str, default: str) -> str:
    value = (config.get_str(name, default) or default).upper()
    if value not in _LOG_LEVELS:
        raise ImproperlyConfigured(f"{name}: expected one of {sorted(_LOG_LEVELS)}, got {value!r}")
    return value


LOG_FORMAT = (config.get_str("LOG_FORMAT", "text") or "text").lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT: expected text or json, got {LOG_FORMAT!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        # One JSON object a line, with the fields of structured lines (attempts) as keys.
        "json": {"()": "deliveries.observability.JsonFormatter"},
    },
    "filters": {"inspector_tokens": {"()": "webhooks_project.security.RedactInspectorTokens"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": _log_level("LOG_LEVEL", "INFO")},
    "loggers": {
        # Request paths are logged on errors; an inspector's path holds its only credential.
        "django.request": {"filters": ["inspector_tokens"]},
        "django.server": {"filters": ["inspector_tokens"]},
        # Workers log at WARNING by default: RQ's per-job INFO lines halve throughput.
        "rq.worker": {"level": _log_level("RQ_LOG_LEVEL", "WARNING")},
        # One line per delivery attempt at INFO; off unless ATTEMPT_LOG_LEVEL=INFO, for speed.
        "webhooks.attempts": {"level": _log_level("ATTEMPT_LOG_LEVEL", "WARNING")},
    },
}
