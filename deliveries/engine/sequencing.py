"""Ordered delivery: a webhook's deliveries with the same ordering value go one at a time.

A delivery with an ordering value (`Delivery.ordering_value`) goes only when no delivery of
the same value before it (by `Delivery.place`, then id) is pending or being sent: claims add
IN_ORDER to the rows they take. So a failing delivery holds back the deliveries of its own
value, through all its retries, until it succeeds or fails for good; other values, and
deliveries without a value, go on.

A long backlog behind a failing delivery would make every claim walk it, so claims park what
they find held back (`park_blocked` clears its due time; a parked delivery is pending with no
due time), and the recorder makes the next delivery of a value due once one finishes
(`release_next`). Both run under the endpoint's claim lock (PostgreSQL's advisory lock, which
the recorder waits for; SQLite's one write lock), so a delivery is never parked after the one
it waited for has finished. The sweep's `release_orphans` is the safety net: it makes due any
parked delivery that nothing holds back any more.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import connection, transaction

from deliveries.engine.finding import param, table
from deliveries.models import Delivery

ADVISORY_NAMESPACE = 0x57484B  # the claims' advisory locks ("WHK"): the same lock per endpoint
PARK_BATCH = 1000  # deliveries one claim parks at most (a claim stays short)

# Whether a delivery `r` has an unfinished delivery of its value before it. The status list is
# written out as the partial index `delivery_ordered_unfinished` has it, so SQLite uses it.
_BEFORE = (
    "EXISTS (SELECT 1 FROM {d} p WHERE p.endpoint_id = r.endpoint_id "
    "AND p.ordering_value = r.ordering_value AND p.status IN ('pending', 'delivering') "
    "AND (p.place < r.place OR (p.place = r.place AND p.id < r.id)))"
)


def in_order_sql() -> str:
    """A condition on a delivery aliased `r`: not ordered, or nothing before it unfinished."""
    return f"(r.ordering_value IS NULL OR NOT {_BEFORE.format(d=table(Delivery))})"


def park_blocked(endpoint_ids: Iterable[int], now: datetime) -> int:
    """Under these endpoints' claim locks: park their due deliveries held back by one before."""
    ids = list(endpoint_ids)
    if not ids:
        return 0
    d = table(Delivery)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {d} SET next_attempt_at = NULL WHERE id IN ("
            f"SELECT r.id FROM {d} r WHERE r.status = 'pending' "
            f"AND r.endpoint_id IN ({', '.join(['%s'] * len(ids))}) "
            "AND r.next_attempt_at <= %s AND r.ordering_value IS NOT NULL "
            f"AND {_BEFORE.format(d=d)} LIMIT %s)",
            [*ids, param(now), PARK_BATCH],
        )
        return cursor.rowcount


def release_next(deliveries: Iterable[Delivery], now: datetime) -> None:
    """After their outcomes are written: for each ordered delivery that finished (succeeded,
    or failed for good), make the next parked delivery of its value due now."""
    finished = sorted(
        {
            (d.endpoint_id, d.ordering_value)
            for d in deliveries
            if d.ordering_value is not None
            and d.endpoint_id is not None
            and d.status in (Delivery.Status.SUCCEEDED, Delivery.Status.FAILED)
        }
    )
    if not finished:
        return
    d = table(Delivery)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Wait for any claim parking deliveries of these endpoints to commit: then what it
            # parked is seen here (locks taken in id order, so two recorders never deadlock).
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, x::int) FROM unnest(%s::bigint[]) AS x "
                "ORDER BY x",
                [ADVISORY_NAMESPACE, sorted({eid for eid, _ in finished})],
            )
        for endpoint_id, value in finished:
            cursor.execute(
                f"UPDATE {d} SET next_attempt_at = %s WHERE id IN ("
                f"SELECT r.id FROM {d} r WHERE r.endpoint_id = %s AND r.ordering_value = %s "
                "AND r.status IN ('pending', 'delivering') "
                "ORDER BY r.place, r.id LIMIT 1) "
                "AND status = 'pending' AND next_attempt_at IS NULL",
                [param(now), endpoint_id, value],
            )


def release_orphans(now: datetime) -> int:
    """Make due every parked delivery that nothing holds back any more (the safety net)."""
    d = table(Delivery)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {d} SET next_attempt_at = %s WHERE id IN ("
            f"SELECT r.id FROM {d} r WHERE r.status = 'pending' "
            "AND r.next_attempt_at IS NULL AND r.ordering_value IS NOT NULL "
            f"AND NOT {_BEFORE.format(d=d)})",
            [param(now)],
        )
        return cursor.rowcount
