"""PostgreSQL behind PgBouncer in transaction-pooling mode (`DATABASE_URL=...?pgbouncer=1`).

Queries need nothing of their own: Django's psycopg 3 backend already prepares nothing
server-side, and the settings turn server-side cursors off. What differs is the test
database: PgBouncer keeps idle server connections to it in its pool after the last client
left, and PostgreSQL refuses to drop a database anyone is connected to. Those connections
are closed first; PgBouncer drops them from its pool and opens new ones when asked.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base, creation


class DatabaseCreation(creation.DatabaseCreation):
    def _execute_create_test_db(
        self, cursor: Any, parameters: dict[str, Any], keepdb: bool = False
    ) -> None:
        # A test database left by an earlier run is dropped and created again (autoclobber),
        # which fails while the pool still holds connections to it.
        if not keepdb:
            self._close_pooled_connections(cursor, parameters["dbname"])
        super()._execute_create_test_db(cursor, parameters, keepdb)

    def _destroy_test_db(self, test_database_name: str, verbosity: int) -> None:
        with self._nodb_cursor() as cursor:
            self._close_pooled_connections(
                cursor, self.connection.ops.quote_name(test_database_name)
            )
        super()._destroy_test_db(test_database_name, verbosity)

    @staticmethod
    def _close_pooled_connections(cursor: Any, quoted_name: str) -> None:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [quoted_name.strip('"')],
        )


class DatabaseWrapper(base.DatabaseWrapper):
    creation_class = DatabaseCreation
