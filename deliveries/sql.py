"""SQL the engine writes by hand on its hot path: prepared INSERTs (events, deliveries, attempts).

save() and bulk_create() did per-row, per-field work that cost more than the statements.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models


def insert_sql(
    model: type[models.Model],
    columns: Sequence[str],
    returning: str = "",
    values: dict[str, str] | None = None,
) -> str:
    """A prepared INSERT of `columns` into a model's table.

    Args:
        values: SQL expressions for some columns instead of a parameter (no parameter is
            passed for those).
    """
    qn = connection.ops.quote_name
    placeholders = [(values or {}).get(c, "%s") for c in columns]
    sql = (
        f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "
        f"VALUES ({', '.join(placeholders)})"
    )
    return sql + f" RETURNING {qn(returning)}" if returning else sql
