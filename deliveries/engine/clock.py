"""The time the engine reasons with: the database's clock, not each worker machine's.

Leases, due times and retry times are compared across every worker on every machine; with
each machine's own clock, a worker whose clock ran ahead released other workers' live claims
(and they sent again). PostgreSQL gives one clock for all of them. SQLite is a file on this
machine, so this machine's clock is the database's clock.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone


def db_now() -> datetime:
    """The database server's current time (aware, UTC)."""
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        # clock_timestamp(), not now(): inside a transaction now() is when it began.
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def now_sql() -> str:
    """SQL for the database's current time, for INSERTs that set a due time."""
    return "clock_timestamp()" if connection.vendor == "postgresql" else "%s"
