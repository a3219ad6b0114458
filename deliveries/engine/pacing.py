"""Pacing: a webhook's rate limit, kept by claims across every worker and machine.

An endpoint with `rate_limit` N sends one delivery every 1/N seconds at most. Its
`rate_next_at` (by the database's clock) is when the next one may go; a claim, under that
endpoint's claim lock (PostgreSQL's advisory lock, SQLite's write lock), takes only the
deliveries whose moments fall within RATE_HORIZON from now, gives each its moment (the sender
waits for it on the event loop) and moves `rate_next_at` on. So in any one second the
receiver gets at most N (+1 at the window's edge), retries included, and a backlog drains at
N a second (less the 2 % of SPACING). Everything later waits unclaimed: it holds no slot,
and no other merchant's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from deliveries.engine.choosing import RATE_HORIZON, Source
from deliveries.engine.finding import param, q, table, when
from endpoints.models import Endpoint

# Moments 2 % further apart than 1/N: a send that starts a few milliseconds late (a busy event
# loop) still leaves any one second with at most N and one at its edge.
SPACING = 1.02


def paced(
    rows: Sequence[Any], sources: Sequence[Source], now: datetime
) -> tuple[list[Any], dict[int, datetime]]:
    """Keep each rate-limited endpoint's rows to its rate (oldest first), under its lock.

    Sets `delay` (seconds from now) on each row it keeps, and writes each endpoint's next
    moment.

    Returns:
        The rows to send, and for each endpoint that had rows held back, when it may send next.
    """
    rates = {s.endpoint_id: s.rate for s in sources if s.endpoint_id is not None and s.rate}
    limited = {row.endpoint_id for row in rows if row.endpoint_id in rates}
    if not limited:
        return list(rows), {}
    moment = {eid: max(at, now) for eid, at in _next_moments(limited, now).items()}
    kept, held = [], {}
    for row in rows:
        eid = row.endpoint_id
        if eid not in limited:
            kept.append(row)
        elif moment[eid] > now + RATE_HORIZON:
            held[eid] = moment[eid]
        else:
            row.delay = (moment[eid] - now).total_seconds()
            moment[eid] += timedelta(seconds=SPACING / rates[eid])
            kept.append(row)
    taken = {row.endpoint_id for row in kept if row.endpoint_id in limited}
    _write_moments({eid: moment[eid] for eid in taken})
    return kept, held


def _next_moments(ids: set[int], now: datetime) -> dict[int, datetime]:
    """Each endpoint's next moment as stored (now when it has none): read under the lock."""
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, rate_next_at FROM {table(Endpoint)} WHERE id IN ({marks})", list(ids)
        )
        return {pk: when(at) or now for pk, at in cursor.fetchall()}


def _write_moments(moments: dict[int, datetime]) -> None:
    by_moment: dict[Any, list[int]] = defaultdict(list)
    for eid, at in moments.items():
        by_moment[param(at)].append(eid)
    with connection.cursor() as cursor:
        for at, ids in by_moment.items():
            cursor.execute(
                f"UPDATE {table(Endpoint)} SET {q('rate_next_at')} = %s "
                f"WHERE id IN ({', '.join(['%s'] * len(ids))})",
                [at, *ids],
            )
