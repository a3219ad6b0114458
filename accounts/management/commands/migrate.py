"""Django's `migrate`, first recording accounts' initial migration on a database that the
endpoints app created the user table in.

The user model moved from the endpoints app to accounts with its table (`endpoints_user`).
A database made before the move has admin, oauth2_provider and endpoints migrations applied
that depend on AUTH_USER_MODEL's first migration, now `accounts.0001_initial`; Django
refuses such a history before any migration could run. That migration changes no table
(it only tells the migration state where the model lives now), so recording it as applied
where `endpoints.0001_initial` (which created the table) is applied is exact.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands.migrate import Command as MigrateCommand
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.recorder import MigrationRecorder

USER_TABLE_CREATED_BY = ("endpoints", "0001_initial")
USER_MODEL_ADOPTED_BY = ("accounts", "0001_initial")


def record_adopted_user_model(connection: BaseDatabaseWrapper) -> bool:
    """Record `accounts.0001_initial` as applied where the user table predates it.

    Returns:
        True when it was recorded now.
    """
    recorder = MigrationRecorder(connection)
    if not recorder.has_table():
        return False
    applied = recorder.applied_migrations()
    if USER_TABLE_CREATED_BY not in applied or USER_MODEL_ADOPTED_BY in applied:
        return False
    recorder.record_applied(*USER_MODEL_ADOPTED_BY)
    return True


class Command(MigrateCommand):
    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options.get("database") or DEFAULT_DB_ALIAS]
        if record_adopted_user_model(connection) and options.get("verbosity", 1) >= 1:
            self.stdout.write(f"Recorded {'.'.join(USER_MODEL_ADOPTED_BY)} (user model moved).")
        super().handle(*args, **options)
