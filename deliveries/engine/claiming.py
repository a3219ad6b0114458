"""Claiming: which due deliveries a worker sends next, fairly and within every cap.

A claim takes only what the worker can send at once (free send slots), so a claimed
delivery is always in flight: nothing waits on a lease that could run out (which made a
second worker send it again). Then:

* per-endpoint caps hold across all workers and machines: the database counts what is in
  flight (`delivering` rows), and on PostgreSQL a transaction-scoped advisory lock on each
  endpoint a claim chose makes two workers' claims for one endpoint take turns (so neither
  counts stale rows); on SQLite the count is re-checked under the machine-wide write lock;
* slots go to the merchant with the fewest sends in flight first (water-filling, one slot at
  a time, by level: 0 or 1 in flight, 2-3, 4-7...), so a merchant with nothing in flight, or
  just one send whose outcome is not written yet, is served at the next claim; between
  merchants of one level, the oldest waiting and the freshest alternate (under a backlog,
  fresh events are not queued behind the whole of it, and the backlog still drains at half
  the rate or more), oldest by the second and in a random order within one, so two workers
  do not reach for the same endpoints first; one merchant never holds more than
  `WEBHOOK_MERCHANT_SHARE` of a worker's slots;
* endpoints that are slow or silent now (`Load.slow`) share a lane of at most
  `WEBHOOK_SLOW_LANE_SHARE` of the slots, so healthy endpoints always find room;
* an endpoint's cap is its adaptive limit (`Endpoint.allowed_in_flight`: halved by timeouts);
* retries never take more than `WEBHOOK_RETRY_SHARE` of the slots: first attempts always
  find a free one;
* an endpoint whose breaker is open is skipped (one probe once its pause ends);
* an endpoint's rate limit holds across workers (`deliveries/engine/pacing.py`, under the
  same locks): what its rate does not allow yet stays unclaimed;
* ordered delivery: a delivery with an ordering value goes only once no delivery of the same
  value before it is pending or being sent (a failing one holds back only its own value).

Which endpoints have due work is `deliveries/engine/finding.py`'s job; which of them a claim
serves, and how many slots each gets, `deliveries/engine/choosing.py`'s.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from deliveries.engine.cache import ClaimCache, claimed_columns
from deliveries.engine.choosing import Load, Source, allocate, share
from deliveries.engine.clock import db_now
from deliveries.engine.finding import (
    Discovery,
    all_sources,
    discover,
    forget_exhausted,
    param,
    q,
    table,
)
from deliveries.engine.pacing import paced
from deliveries.engine.sequencing import ADVISORY_NAMESPACE, in_order_sql, park_blocked
from deliveries.models import Delivery
from lib import http

__all__ = [
    "Discovery",
    "Load",
    "claim",
    "claim_ids",
    "has_claimable",
    "oldest_due",
    "release",
    "release_expired",
]

UNION_CHUNK = 400  # endpoints' row queries in one statement (SQLite's limit is 500 terms)


def claim(
    token: str,
    slots: int,
    load: Load,
    cache: ClaimCache | None = None,
    discovery: Discovery | None = None,
) -> list[Delivery]:
    """Claim up to `slots` due deliveries for one worker, to be sent at once.

    Args:
        token: this worker's claim token, written to `claimed_by`.
        slots: free sender threads.
        load: what this worker has in flight (for the merchant and retry shares).
        cache: a worker's cache of events and endpoints shared by many deliveries.
        discovery: a worker's recent scan for endpoints with due work, to reuse.

    Returns:
        The claimed deliveries with event, merchant and endpoint loaded; a delivery paced by
        its endpoint's rate limit carries `send_at`, its moment on `time.monotonic()`.
    """
    if slots <= 0:
        return []
    held: dict[int, datetime] = {}
    marked: list[Any] = []
    local = time.monotonic()
    if connection.vendor == "postgresql":
        with transaction.atomic():
            now, local = db_now(), time.monotonic()
            chosen = allocate(*discover(now, slots, load, discovery), slots, load, now)
            # Only what this claim chose is locked and counted again: the cost of a claim
            # follows what it sends, not how many endpoints have work.
            locked = _lock_endpoints([s.endpoint_id for s in chosen if s.endpoint_id])
            chosen = _within_room(chosen, locked, _in_flight(locked, load.unrecorded))
            rows, more = _rows_for(chosen, now)
            rows = _retry_share(rows, load)
            park_blocked(_short_and_ordered(chosen, rows), now)
            rows, held = paced(rows, chosen, now)
            marked = _mark(token, rows, now)
    else:
        # SQLite: the reads run outside the one machine-wide write lock; only the re-count,
        # the rate limits and the conditional UPDATE hold it.
        now = db_now()
        chosen = allocate(*discover(now, slots, load, discovery), slots, load, now)
        rows, more = _rows_for(chosen, now)
        rows = _retry_share(rows, load)
        to_park = _short_and_ordered(chosen, rows)
        if rows or to_park:
            with transaction.atomic():
                # The lease starts once the write lock is ours, not before the wait.
                now, local = db_now(), time.monotonic()
                park_blocked(to_park, now)
                rows = _within_caps(rows, chosen, load)
                rows, held = paced(rows, chosen, now)
                marked = _mark(token, rows, now)
    forget_exhausted(discovery, chosen, more, held)
    if not marked:
        return []
    deliveries = (cache or ClaimCache()).build(marked, token)
    # A paced delivery's moment, on this machine's clock: measured from when the claim read
    # the database's clock, so the time the claim itself took does not shift it.
    moments = {row.id: local + row.delay for row in rows if row.delay}
    for delivery in deliveries:
        delivery.send_at = moments.get(delivery.pk, 0.0)
    return deliveries


def claim_ids(token: str, ids: Sequence[int]) -> list[Delivery]:
    """Claim exactly these pending deliveries, due or not (a synchronous Send test)."""
    now = db_now()
    rows = [
        _Row(pk, endpoint_id, merchant_id, attempts, timeout or http.MAX_TIMEOUT)
        for pk, endpoint_id, merchant_id, attempts, timeout in Delivery.objects.filter(
            pk__in=ids, status=Delivery.Status.PENDING
        ).values_list("id", "endpoint_id", "merchant_id", "attempts", "endpoint__timeout_seconds")
    ]
    with transaction.atomic():
        marked = _mark(token, rows, now, due=False) if rows else []
    return ClaimCache().build(marked, token)


def oldest_due(now: datetime | None = None) -> datetime | None:
    """When the longest-waiting claimable delivery came due (health checks and metrics).

    From the same skip scan as claims: one probe per endpoint with pending work, never a walk
    over a parked endpoint's backlog.
    """
    now = now or db_now()
    return min((s.due for s in all_sources(now, 1, Load(capacity=1))), default=None)


def has_claimable(now: datetime | None = None) -> bool:
    """Whether any delivery could be claimed now (the sweep's reason to kick a pump)."""
    now = now or db_now()
    return bool(all_sources(now, 1, Load(capacity=1)))


def release(token: str, ids: Sequence[int]) -> int:
    """Give back claims that were never sent: due again at once, attempt uncounted."""
    return Delivery.objects.filter(
        pk__in=ids, claimed_by=token, status=Delivery.Status.DELIVERING
    ).update(
        status=Delivery.Status.PENDING,
        claimed_by="",
        claimed_until=None,
        attempts=F("attempts") - 1,
    )


def release_expired() -> int:
    """Give back the claims of workers that died mid-send (their lease ran out)."""
    now = db_now()
    return Delivery.objects.filter(status=Delivery.Status.DELIVERING, claimed_until__lt=now).update(
        status=Delivery.Status.PENDING, next_attempt_at=now, claimed_by="", claimed_until=None
    )


# --- finding work -------------------------------------------------------------------------


def _lock_endpoints(ids: list[int]) -> set[int]:
    """PostgreSQL: the endpoints no other worker is claiming for right now (locked till commit)."""
    if not ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT x FROM unnest(%s::bigint[]) AS x WHERE pg_try_advisory_xact_lock(%s, x::int)",
            [ids, ADVISORY_NAMESPACE],
        )
        return {row[0] for row in cursor.fetchall()}


def _in_flight(ids: set[int] | list[int], unrecorded: set[int]) -> dict[int, int]:
    """Deliveries in flight per endpoint, across every worker (less this pump's finished)."""
    if not ids:
        return {}
    placeholders = ", ".join(["%s"] * len(ids))
    not_mine = f"AND id NOT IN ({', '.join(['%s'] * len(unrecorded))}) " if unrecorded else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT endpoint_id, COUNT(*) FROM {table(Delivery)} "
            f"WHERE status = 'delivering' AND endpoint_id IN ({placeholders}) {not_mine}"
            "GROUP BY endpoint_id",
            [*ids, *unrecorded],
        )
        return dict(cursor.fetchall())


# --- choosing, fairly -------------------------------------------------------------------


@dataclass
class _Row:
    id: int
    endpoint_id: int | None
    merchant_id: int
    attempts: int
    timeout: float
    delay: float = 0.0  # seconds its send waits for its moment (a rate limit)


def _within_room(chosen: list[Source], locked: set[int], busy: dict[int, int]) -> list[Source]:
    """PostgreSQL, under the chosen endpoints' locks: what each may still take now."""
    kept = []
    for source in chosen:
        if source.endpoint_id is not None:
            if source.endpoint_id not in locked:
                continue  # another worker is claiming for it right now
            room = source.cap - max(source.busy, busy.get(source.endpoint_id, 0))
            source.given = min(source.given, room)
        if source.given > 0:
            kept.append(source)
    return kept


def _retry_share(rows: list[_Row], load: Load) -> list[_Row]:
    """Retries never take more than their share of the slots: first attempts find room."""
    retry_room = share(load.capacity, settings.WEBHOOK_RETRY_SHARE) - load.retries
    chosen = []
    for row in rows:
        if row.attempts > 0:
            if retry_room <= 0:
                continue  # reserved for first attempts
            retry_room -= 1
        chosen.append(row)
    return chosen


def _rows_for(allocation: list[Source], now: datetime) -> tuple[list[_Row], set[int]]:
    """The oldest due rows of each source, as many as it was given (one query for all), of
    which an ordered one only when nothing of its value holds it back (whatever the
    endpoint's ordering key is now: deliveries already waiting keep their order).

    Each endpoint's query reads one row more than it was given: the endpoints that have
    more due work than this claim takes are returned with the rows (the others leave a
    reused scan at once instead of being offered a slot by the next claim, which in a crowd
    of endpoints with one delivery each wasted every other slot).
    """
    rows: list[_Row] = []
    wanted: list[Source] = []
    for source in allocation:
        if source.delivery is not None:
            pk, attempts = source.delivery
            rows.append(_Row(pk, None, source.merchant_id, attempts, http.MAX_TIMEOUT))
        else:
            wanted.append(source)
    if not wanted:
        return rows, set()
    timeouts = {s.endpoint_id: s.timeout for s in wanted}
    given = {s.endpoint_id: s.given for s in wanted}
    if connection.vendor == "postgresql":
        found = _rows_lateral(wanted, now)
    else:
        found = _rows_union(wanted, now)
    taken: Counter[int] = Counter()
    more: set[int] = set()
    for pk, endpoint_id, merchant_id, attempts in found:
        if taken[endpoint_id] >= given[endpoint_id]:
            more.add(endpoint_id)
            continue
        taken[endpoint_id] += 1
        rows.append(_Row(pk, endpoint_id, merchant_id, attempts, timeouts[endpoint_id]))
    return rows, more


def _rows_lateral(wanted: list[Source], now: datetime) -> list[Any]:
    """PostgreSQL: one lateral subquery over the endpoints' ids (planned once; a UNION of 200
    subqueries took 40 ms to plan and run).

    No row locks: the endpoint's advisory lock keeps other claims away, and `_mark`'s UPDATE
    takes a row only if it is still pending and due (under READ COMMITTED it re-reads a row
    changed meanwhile, by a cancel or a manual retry). Locking each row wrote to every one
    of them twice.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.id, t.endpoint_id, t.merchant_id, t.attempts "
            "FROM unnest(%s::bigint[], %s::int[]) AS s(eid, n) "
            "CROSS JOIN LATERAL (SELECT id, endpoint_id, merchant_id, attempts "
            f"FROM {table(Delivery)} r "
            "WHERE status = 'pending' AND endpoint_id = s.eid AND next_attempt_at <= %s "
            f"AND {in_order_sql()} "
            "ORDER BY next_attempt_at, id LIMIT s.n + 1) t",
            [
                [s.endpoint_id for s in wanted],
                [s.given for s in wanted],
                param(now),
            ],
        )
        return cursor.fetchall()


def _rows_union(wanted: list[Source], now: datetime) -> list[Any]:
    """SQLite: a UNION of one subquery per endpoint (its planner is quick; it has no LATERAL)."""
    parts: list[str] = []
    params: list[Any] = []
    d = table(Delivery)
    in_order = in_order_sql()
    for source in wanted:
        parts.append(
            f"SELECT * FROM (SELECT id, endpoint_id, merchant_id, attempts FROM {d} r "
            "WHERE status = 'pending' AND endpoint_id = %s AND next_attempt_at <= %s "
            + f"AND {in_order} "
            + f"ORDER BY next_attempt_at, id LIMIT %s) AS t{len(parts)}"
        )
        params += [source.endpoint_id, param(now), source.given + 1]
    found: list[Any] = []
    with connection.cursor() as cursor:
        # SQLite allows 500 terms in one compound SELECT: a claim for a crowd of endpoints
        # runs in chunks.
        for start in range(0, len(parts), UNION_CHUNK):
            cursor.execute(
                " UNION ALL ".join(parts[start : start + UNION_CHUNK]),
                params[start * 3 : (start + UNION_CHUNK) * 3],
            )
            found += cursor.fetchall()
    return found


def _short_and_ordered(chosen: list[Source], rows: list[_Row]) -> set[int]:
    """Ordered endpoints that had fewer due rows to send than they were given: some may be
    held back by a delivery before them (sequencing parks those)."""
    taken = Counter(row.endpoint_id for row in rows)
    return {
        s.endpoint_id
        for s in chosen
        if s.endpoint_id is not None and s.ordered and taken[s.endpoint_id] < s.given
    }


def _within_caps(rows: list[_Row], sources: list[Source], load: Load) -> list[_Row]:
    """SQLite, under the write lock: drop what would take an endpoint past its cap now."""
    caps = {s.endpoint_id: s.cap for s in sources if s.endpoint_id}
    busy = Counter(
        _in_flight(list({r.endpoint_id for r in rows if r.endpoint_id}), load.unrecorded)
    )
    kept = []
    for row in rows:
        if row.endpoint_id is not None:
            if busy[row.endpoint_id] >= caps[row.endpoint_id]:
                continue
            busy[row.endpoint_id] += 1
        kept.append(row)
    return kept


def _mark(token: str, rows: list[_Row], now: datetime, *, due: bool = True) -> list[Any]:
    """Make the chosen rows ours if they are still pending (and still due).

    The lease covers one request from now (its deadline plus a margin), by the database's
    clock; a dead worker's claims come back after it. Written by hand: building the ORM's
    UPDATE cost more than running it, on every claim.

    Returns:
        The rows made ours, as `ClaimCache.build` takes them (RETURNING: no second query).
    """
    by_lease: dict[float, list[int]] = defaultdict(list)
    for row in rows:
        by_lease[row.timeout].append(row.id)
    margin = settings.WEBHOOK_LEASE_MARGIN_SECONDS
    # Taken, tried and rescheduled by another worker since we looked: not due now.
    still_due = f" AND {q('next_attempt_at')} <= %s" if due else ""
    marked: list[Any] = []
    with connection.cursor() as cursor:
        for timeout, ids in by_lease.items():
            cursor.execute(
                f"UPDATE {table(Delivery)} SET {q('status')} = 'delivering', "
                f"{q('claimed_by')} = %s, {q('claimed_until')} = %s, "
                f"{q('attempts')} = {q('attempts')} + 1, {q('last_attempt_at')} = %s "
                f"WHERE {q('id')} IN ({', '.join(['%s'] * len(ids))}) "
                f"AND {q('status')} = 'pending'{still_due} RETURNING {claimed_columns()}",
                [
                    token,
                    param(now + timedelta(seconds=timeout + margin)),
                    param(now),
                    *ids,
                    *([param(now)] if due else []),
                ],
            )
            marked += cursor.fetchall()
    return marked
