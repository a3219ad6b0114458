"""Reading settings from the environment, failing loudly on anything malformed.

Every error names the variable, so a bad deployment stops at start-up with one line
that says what to fix instead of failing later in a worker.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import warnings
from typing import Any
from urllib.parse import unquote, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

_DB_SCHEMES = {"sqlite", "postgres", "postgresql", "pgsql", "psql", "postgis"}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _fail(name: str, problem: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}: {problem}")


def get_str(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def get_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _fail(name, f"expected true/false (1/0), got {raw!r}")


def get_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _fail(name, f"expected a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise _fail(name, f"must be at least {minimum}, got {value}")
    return value


def get_fraction(name: str, default: float) -> float:
    """A number above 0 and at most 1 (a share of something)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _fail(name, f"expected a number between 0 and 1, got {raw!r}") from None
    if not 0 < value <= 1:
        raise _fail(name, f"must be above 0 and at most 1, got {value}")
    return value


def get_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def get_database(name: str, default: str) -> dict[str, Any]:
    raw = os.environ.get(name, default)
    scheme = urlsplit(raw).scheme
    if scheme not in _DB_SCHEMES:
        raise _fail(
            name, f"unsupported or malformed database URL {raw!r} (use sqlite:/// or postgres://)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = env.db_url_config(raw)
    if not config.get("ENGINE") or not config.get("NAME"):
        raise _fail(name, f"malformed database URL {raw!r}")
    # A unix-socket directory arrives percent-encoded in the host part.
    if isinstance(config.get("HOST"), str):
        config["HOST"] = unquote(config["HOST"])
    return config


def pop_pgbouncer_flag(name: str, database: dict[str, Any]) -> bool:
    """Take `?pgbouncer=1` off a database URL's options (psycopg would refuse it).

    Returns:
        Whether the URL points at PgBouncer in transaction-pooling mode.
    """
    raw = database.get("OPTIONS", {}).pop("pgbouncer", None)
    if raw is None:
        return False
    value = str(raw).strip().lower()
    if value not in _TRUE | _FALSE:
        raise _fail(name, f"pgbouncer: expected true/false (1/0), got {raw!r}")
    if value in _TRUE and "postgresql" not in database["ENGINE"]:
        raise _fail(name, "pgbouncer=1 needs a postgres:// URL")
    return value in _TRUE


def get_redis_sentinels(name: str) -> list[tuple[str, int]]:
    """Comma-separated `host:port` addresses of Redis Sentinels, e.g. "10.0.0.7:26379"."""
    sentinels = []
    for value in get_list(name, []):
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise _fail(name, f"{value!r} is not host:port (e.g. 10.0.0.7:26379)")
        sentinels.append((host.strip("[]"), int(port)))
    return sentinels


def get_redis_url(name: str) -> str | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    parts = urlsplit(raw)
    if parts.scheme not in _REDIS_SCHEMES or (parts.scheme != "unix" and not parts.hostname):
        raise _fail(name, f"malformed Redis URL {raw!r} (use redis://host:port/db)")
    return raw


def get_networks(name: str) -> list[str]:
    values = get_list(name, [])
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise _fail(name, f"{value!r} is not a network (use CIDR, e.g. 10.0.0.0/8)") from None
    return values


def get_ports(name: str) -> list[int]:
    """Comma-separated TCP ports, e.g. "8000,8443"."""
    ports = []
    for value in get_list(name, []):
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            raise _fail(name, f"{value!r} is not a TCP port (1 to 65535)")
        ports.append(int(value))
    return ports


def get_email(name: str, default: str) -> dict[str, Any]:
    raw = os.environ.get(name, default)
    try:
        return env.email_url_config(raw)
    except (KeyError, ValueError):
        raise _fail(name, f"malformed e-mail URL {raw!r} (use smtp://user:pass@host:587)") from None


_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def get_rate(name: str, default: str) -> tuple[int, int]:
    """A rate such as "600/minute", as (requests, window seconds)."""
    raw = os.environ.get(name, default)
    count, _, period = raw.partition("/")
    seconds = _PERIODS.get(period.strip().lower().rstrip("s") or "")
    if not count.strip().isdigit() or int(count) < 1 or seconds is None:
        raise _fail(name, f"expected a rate like 600/minute, got {raw!r}")
    return int(count), seconds


def get_fernet_keys(name: str) -> list[str]:
    """Comma-separated Fernet keys (32 url-safe base64 bytes each); the first encrypts."""
    keys = get_list(name, [])
    for key in keys:
        try:
            if len(base64.urlsafe_b64decode(key.encode())) != 32:
                raise ValueError
        except ValueError:
            raise _fail(
                name,
                "each key must be 32 url-safe base64-encoded bytes (make one with: python -c "
                "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')",
            ) from None
    return keys


# SECRET_KEY of DEBUG=1 runs with none set; `make run` keeps reading what they encrypted.
DEV_SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"


def derive_fernet_key(secret_key: str) -> str:
    """A local-development encryption key derived from SECRET_KEY."""
    digest = hashlib.sha256(b"field-encryption:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()
