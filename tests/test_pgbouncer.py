"""PostgreSQL behind PgBouncer in transaction-pooling mode (`DATABASE_URL=...?pgbouncer=1`).

`make test-postgres` runs the whole suite through the embedded PgBouncer; the first test
proves that it does. The others check what the flag turns on, in a fresh process, since
settings are read once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection, transaction

BASE = Path(__file__).resolve().parent.parent

through_pgbouncer = pytest.mark.skipif(
    not settings.DATABASE_PGBOUNCER, reason="DATABASE_URL is not a PgBouncer URL (?pgbouncer=1)"
)


def admin_console(command: str) -> list[dict[str, Any]]:
    """Rows of a SHOW command on PgBouncer's admin console (the `pgbouncer` database)."""
    db = connection.settings_dict
    # The console speaks only the simple query protocol, which ClientCursor uses.
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="pgbouncer",
        autocommit=True,
        cursor_factory=psycopg.ClientCursor,
    ) as console:
        cursor = console.execute(command)
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def pgbouncer_stats() -> dict[str, Any]:
    name = connection.settings_dict["NAME"]
    return next(row for row in admin_console("SHOW STATS") if row["database"] == name)


@through_pgbouncer
def test_it_runs_the_tests_transactions_through_pgbouncer_in_transaction_mode(
    transactional_db: None,
) -> None:
    name = connection.settings_dict["NAME"]
    pools = [row for row in admin_console("SHOW POOLS") if row["database"] == name]
    assert [row["pool_mode"] for row in pools] == ["transaction"]
    before = pgbouncer_stats()["total_xact_count"]
    for _ in range(5):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    # PgBouncer counted them: they went through it, not straight to PostgreSQL.
    assert pgbouncer_stats()["total_xact_count"] >= before + 5
    clients = [row for row in admin_console("SHOW CLIENTS") if row["database"] == name]
    assert clients, "this test's own connection is a PgBouncer client"


def settings_in_a_fresh_process(tmp_path: Path, **env: str) -> dict[str, Any]:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'database': s.DATABASES['default'], "
        "'pgbouncer': s.DATABASE_PGBOUNCER}, default=str))"
    )
    full = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "webhooks_project.settings",
        "DEBUG": "1",
        "VAR_DIR": str(tmp_path),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, cwd=BASE
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_it_turns_off_what_transaction_pooling_breaks(tmp_path: Path) -> None:
    seen = settings_in_a_fresh_process(
        tmp_path, DATABASE_URL="postgres://app:pw@pgbouncer.internal:6432/webhooks?pgbouncer=1"
    )
    database = seen["database"]
    assert seen["pgbouncer"] is True
    assert database["ENGINE"] == "webhooks_project.pgbouncer"
    assert database["OPTIONS"] == {"prepare_threshold": None}  # the flag is not passed on
    assert database["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert (database["HOST"], database["PORT"], database["NAME"]) == (
        "pgbouncer.internal",
        6432,
        "webhooks",
    )


def test_it_leaves_a_plain_postgres_url_alone(tmp_path: Path) -> None:
    seen = settings_in_a_fresh_process(
        tmp_path, DATABASE_URL="postgres://app:pw@db.internal:5432/webhooks?pgbouncer=0"
    )
    assert seen["pgbouncer"] is False
    assert seen["database"]["ENGINE"] == "django.db.backends.postgresql"
    assert "DISABLE_SERVER_SIDE_CURSORS" not in seen["database"]
