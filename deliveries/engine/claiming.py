"""Claiming: which due deliveries a worker sends next, fairly and within every cap.

A claim takes only what the worker can send at once (free send slots), so a claimed
delivery is always in flight: nothing waits on a lease that could run out (which made a
second worker send it again). Then:

* per-endpoint caps hold across all workers and machines: the database counts what is in
  flight (`delivering` rows), and on PostgreSQL a transaction-scoped advisory lock on each
  endpoint a claim chose makes two workers' claims for one endpoint take turns (so neither
  counts stale rows); on SQLite the count is re-checked under the machine-wide write lock;
* slots go to the merchant with the fewest sends in flight first (water-filling, one slot at
  a time), so a merchant with nothing in flight is served at the next claim; between merchants
  with as many in flight, the oldest waiting and the freshest alternate (under a backlog,
  fresh events are not queued behind the whole of it, and the backlog still drains at half
  the rate or more); one merchant never holds more than `WEBHOOK_MERCHANT_SHARE` of a worker's
  slots;
* endpoints that are slow or silent now (`Load.slow`) share a lane of at most
  `WEBHOOK_SLOW_LANE_SHARE` of the slots, so healthy endpoints always find room;
* an endpoint's cap is its adaptive limit (`Endpoint.allowed_in_flight`: halved by timeouts);
* retries never take more than `WEBHOOK_RETRY_SHARE` of the slots: first attempts always
  find a free one;
* an endpoint whose breaker is open is skipped (one probe once its pause ends);
* endpoints with due work are found by a skip scan over the per-endpoint due index (one
  probe per endpoint), so a dead endpoint's 100,000 due rows are never walked; a worker's
  claims reuse one scan for DISCOVERY_SECONDS (less what they exhausted, and endpoints whose
  failure was recorded meanwhile), so claiming every few milliseconds does not scan every
  endpoint with work every few milliseconds.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils.dateparse import parse_datetime

from deliveries.engine.cache import ClaimCache
from deliveries.engine.clock import db_now
from deliveries.models import Delivery
from endpoints.models import Endpoint
from lib import http

ADVISORY_NAMESPACE = 0x57484B  # PostgreSQL advisory locks of endpoint claims ("WHK")
ONE_OFF = "one-off"
DISCOVERY_SECONDS = 0.5  # how long a worker's claims reuse one scan for endpoints with work
UNION_CHUNK = 400  # endpoints' row queries in one statement (SQLite's limit is 500 terms)


@dataclass
class Load:
    """What this worker already has in flight."""

    capacity: int  # sends this worker may have in flight at once
    by_merchant: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    # Deliveries finished here but not yet recorded: their rows still say `delivering`, and
    # are left out of in-flight counts (by id, so a row recorded meanwhile is not left out twice).
    unrecorded: set[int] = field(default_factory=set)
    # Endpoints with a failed attempt not yet recorded: claimed again only once the outcome is
    # written, so a 410 disables, and a breaker opens, before anything more goes out.
    held: Counter[int] = field(default_factory=Counter)
    # The slow lane: endpoints slow or silent now, and this worker's sends in flight to them.
    slow: set[int] = field(default_factory=set)
    slow_in_flight: int = 0
    by_endpoint: Counter[int] = field(default_factory=Counter)  # this worker's sends in flight

    def copy(self) -> Load:
        """A snapshot for one claim, while sends keep changing the original."""
        return Load(
            self.capacity,
            Counter(self.by_merchant),
            self.retries,
            set(self.unrecorded),
            Counter(self.held),
            set(self.slow),
            self.slow_in_flight,
            Counter(self.by_endpoint),
        )


@dataclass
class _Source:
    """An endpoint with due work, or one due one-off delivery."""

    merchant_id: int
    due: datetime
    cap: int
    busy: int = 0
    endpoint_id: int | None = None
    delivery: tuple[int, int] | None = None  # (id, attempts) of a one-off delivery
    timeout: float = http.MAX_TIMEOUT
    given: int = 0  # slots handed to it by this claim
    others: int = 0  # in flight from other workers when it was found (a reused scan)

    @property
    def room(self) -> int:
        return self.cap - self.busy


class Discovery:
    """A worker's last scan for endpoints with due work, reused by its claims for a moment.

    Endpoints whose failure was recorded since (their breaker or due time may have moved) and
    endpoints a claim found short of work are dropped from it until the next scan.
    """

    def __init__(self) -> None:
        self.sources: list[_Source] | None = None
        self.at = 0.0

    def forget(self, endpoint_ids: set[int]) -> None:
        if self.sources and endpoint_ids:
            self.sources = [s for s in self.sources if s.endpoint_id not in endpoint_ids]


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
        The claimed deliveries with event, merchant and endpoint loaded.
    """
    if slots <= 0:
        return []
    if connection.vendor == "postgresql":
        with transaction.atomic():
            now = db_now()
            chosen = _allocate(discover(now, slots, load, discovery), slots, load)
            # Only what this claim chose is locked and counted again: the cost of a claim
            # follows what it sends, not how many endpoints have work.
            locked = _lock_endpoints([s.endpoint_id for s in chosen if s.endpoint_id])
            chosen = _within_room(chosen, locked, _in_flight(locked, load.unrecorded))
            rows = _retry_share(_rows_for(chosen, now, skip_locked=True), load)
            _mark(token, rows, now)
    else:
        # SQLite: the reads run outside the one machine-wide write lock; only the re-count
        # and the conditional UPDATE hold it.
        now = db_now()
        sources = discover(now, slots, load, discovery)
        chosen = _allocate(sources, slots, load)
        rows = _retry_share(_rows_for(chosen, now, skip_locked=False), load)
        if not rows:
            _exhausted(discovery, chosen, rows)
            return []
        with transaction.atomic():
            now = db_now()  # the lease starts once the write lock is ours, not before the wait
            rows = _within_caps(rows, sources, load)
            _mark(token, rows, now)
    _exhausted(discovery, chosen, rows)
    if not rows:
        return []
    return (cache or ClaimCache()).load([row.id for row in rows], token)


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
        _mark(token, rows, now, due=False)
    return ClaimCache().load([row.id for row in rows], token) if rows else []


def oldest_due(now: datetime | None = None) -> datetime | None:
    """When the longest-waiting claimable delivery came due (health checks and metrics).

    From the same skip scan as claims: one probe per endpoint with pending work, never a walk
    over a parked endpoint's backlog.
    """
    now = now or db_now()
    return min((s.due for s in _sources(now, 1, Load(capacity=1))), default=None)


def has_claimable(now: datetime | None = None) -> bool:
    """Whether any delivery could be claimed now (the sweep's reason to kick a pump)."""
    now = now or db_now()
    return bool(_sources(now, 1, Load(capacity=1)))


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


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model: Any) -> str:
    return _q(model._meta.db_table)


def _when(value: Any) -> datetime | None:
    """An aware datetime from a raw query: SQLite hands back text, or a naive UTC datetime."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(value)
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _param(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _ready_endpoints_sql(excluded: int) -> str:
    # 'pending' is written out, not bound: SQLite uses a partial index only for a literal.
    d, e = _table(Delivery), _table(Endpoint)
    not_mine = f"AND id NOT IN ({', '.join(['%s'] * excluded)})" if excluded else ""
    return f"""
        WITH RECURSIVE ready(eid) AS (
            SELECT MIN(endpoint_id) FROM {d}
            WHERE status = 'pending' AND endpoint_id IS NOT NULL
            UNION ALL
            SELECT (SELECT MIN(endpoint_id) FROM {d}
                    WHERE status = 'pending' AND endpoint_id > ready.eid)
            FROM ready WHERE ready.eid IS NOT NULL
        )
        SELECT e.id, e.merchant_id, e.max_in_flight, e.concurrency_limit, e.timeout_seconds,
               e.breaker_state, e.breaker_probe_at,
               (SELECT next_attempt_at FROM {d}
                WHERE status = 'pending' AND endpoint_id = e.id AND next_attempt_at IS NOT NULL
                ORDER BY endpoint_id, next_attempt_at LIMIT 1) AS due,
               (SELECT COUNT(*) FROM {d}
                WHERE status = 'delivering' AND endpoint_id = e.id {not_mine}) AS busy
        FROM ready JOIN {e} e ON e.id = ready.eid
        WHERE e.is_enabled
    """


def discover(now: datetime, slots: int, load: Load, discovery: Discovery | None) -> list[_Source]:
    """The endpoints with due work for one claim: a scan, or a worker's recent one.

    A reused scan is safe: the claim itself re-checks every chosen row (still pending, still
    due) and every cap (under the lock or the write lock); at worst a slot goes unused until
    the next claim. A new endpoint with work is found by the next scan, at most
    DISCOVERY_SECONDS later.
    """
    if discovery is None:
        return _sources(now, slots, load)
    if discovery.sources is None or time.monotonic() - discovery.at > DISCOVERY_SECONDS:
        discovery.sources = _endpoint_sources(now, load)
        discovery.at = time.monotonic()
        for source in discovery.sources:
            # What other workers had in flight; this worker's own count is known exactly.
            source.others = max(0, source.busy - load.by_endpoint.get(source.endpoint_id, 0))
    reused = [
        dataclasses.replace(s, given=0, busy=s.others + load.by_endpoint.get(s.endpoint_id, 0))
        for s in discovery.sources
        if s.due <= now and not load.held.get(s.endpoint_id or 0)
    ]
    return reused + _one_offs(now, slots)


def _exhausted(discovery: Discovery | None, chosen: list[_Source], rows: list[_Row]) -> None:
    """Keep a reused scan honest: endpoints that had less due work than they were given (or
    that another worker was claiming for) are dropped from it until the next scan."""
    if discovery is None or not discovery.sources:
        return
    taken = Counter(row.endpoint_id for row in rows if row.endpoint_id is not None)
    discovery.forget(
        {s.endpoint_id for s in chosen if s.endpoint_id and taken[s.endpoint_id] < s.given}
    )


def _one_offs(now: datetime, slots: int) -> list[_Source]:
    """Due one-off deliveries (a per-event URL: no endpoint, no cap)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, merchant_id, attempts, next_attempt_at FROM {_table(Delivery)} "
            "WHERE status = 'pending' AND endpoint_id IS NULL AND next_attempt_at <= %s "
            "ORDER BY next_attempt_at LIMIT %s",
            [_param(now), slots],
        )
        return [
            _Source(merchant_id, _when(due) or now, 1, delivery=(pk, attempts))
            for pk, merchant_id, attempts, due in cursor.fetchall()
        ]


def _sources(now: datetime, slots: int, load: Load) -> list[_Source]:
    """Endpoints with due work and room under their cap, and due one-off deliveries."""
    return _endpoint_sources(now, load) + _one_offs(now, slots)


def _endpoint_sources(now: datetime, load: Load) -> list[_Source]:
    """Endpoints with due work and room under their cap (a skip scan: one probe each)."""
    sources: list[_Source] = []
    with connection.cursor() as cursor:
        cursor.execute(_ready_endpoints_sql(len(load.unrecorded)), list(load.unrecorded))
        rows = cursor.fetchall()
        for eid, merchant_id, cap, limit, timeout, state, probe_at, due, busy in rows:
            due, probe_at = _when(due), _when(probe_at)
            cap = max(1, min(cap, limit)) if limit is not None else cap  # adaptive: see breaker
            if due is None or due > now or load.held.get(eid):
                continue
            if state == Endpoint.BreakerState.OPEN:
                if probe_at is not None and probe_at > now:
                    continue  # parked: its backlog waits, holding no thread
                cap = 1  # half-open: one probe at a time
            if busy < cap:
                sources.append(
                    _Source(merchant_id, due, cap, busy, endpoint_id=eid, timeout=float(timeout))
                )
    return sources


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
            f"SELECT endpoint_id, COUNT(*) FROM {_table(Delivery)} "
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


def _share(capacity: int, fraction: float) -> int:
    return max(1, math.floor(capacity * fraction))


def _allocate(sources: list[_Source], slots: int, load: Load) -> list[_Source]:
    """Hand out slots one at a time to the merchant with the fewest sends in flight (across
    every worker, as the database counts them), within each merchant round robin over its
    endpoints; each source within its room, each merchant within its share of the slots, the
    slow lane within its share. Sets each source's `given`."""
    share = _share(load.capacity, settings.WEBHOOK_MERCHANT_SHARE)
    slow_room = _share(load.capacity, settings.WEBHOOK_SLOW_LANE_SHARE) - load.slow_in_flight
    queues: dict[int, deque[_Source]] = defaultdict(deque)
    in_flight: Counter[int] = Counter()
    for source in sorted(sources, key=lambda s: s.due):
        if source.room > 0:
            queues[source.merchant_id].append(source)
        in_flight[source.merchant_id] += source.busy
    allowance = {m: share - load.by_merchant.get(m, 0) for m in queues}
    heap = [
        (max(in_flight[m], load.by_merchant.get(m, 0)), rank, m)
        for rank, m in _oldest_and_freshest(list(queues))
        if allowance[m] > 0  # a merchant holding its whole share of this worker waits
    ]
    heapq.heapify(heap)
    while slots > 0 and heap:
        busy, rank, merchant_id = heapq.heappop(heap)
        own = queues[merchant_id]
        source = own.popleft()
        if source.endpoint_id in load.slow:
            if slow_room <= 0:
                # The slow lane is full: this endpoint waits, the merchant's others may go.
                if own:
                    heapq.heappush(heap, (busy, rank, merchant_id))
                continue
            slow_room -= 1
        source.given += 1
        allowance[merchant_id] -= 1
        slots -= 1
        if source.given < source.room:
            own.append(source)  # to the back: the merchant's next endpoint goes next
        if own and allowance[merchant_id] > 0:
            heapq.heappush(heap, (busy + 1, rank, merchant_id))
    return [s for s in sources if s.given]


def _oldest_and_freshest(merchants: list[int]) -> list[tuple[int, int]]:
    """(rank, merchant) for merchants listed oldest due first: the oldest, the freshest, the
    second oldest, the second freshest... so a backlog neither starves nor is starved."""
    last = len(merchants) - 1
    return [(min(2 * i, 2 * (last - i) + 1), m) for i, m in enumerate(merchants)]


def _within_room(chosen: list[_Source], locked: set[int], busy: dict[int, int]) -> list[_Source]:
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
    retry_room = _share(load.capacity, settings.WEBHOOK_RETRY_SHARE) - load.retries
    chosen = []
    for row in rows:
        if row.attempts > 0:
            if retry_room <= 0:
                continue  # reserved for first attempts
            retry_room -= 1
        chosen.append(row)
    return chosen


def _rows_for(allocation: list[_Source], now: datetime, *, skip_locked: bool) -> list[_Row]:
    """The oldest due rows of each source, as many as it was given (one query for all)."""
    rows: list[_Row] = []
    parts: list[str] = []
    params: list[Any] = []
    timeouts: dict[int, float] = {}
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
    d = _table(Delivery)
    for source in allocation:
        if source.delivery is not None:
            pk, attempts = source.delivery
            rows.append(_Row(pk, None, source.merchant_id, attempts, http.MAX_TIMEOUT))
            continue
        assert source.endpoint_id is not None
        timeouts[source.endpoint_id] = source.timeout
        parts.append(
            f"SELECT * FROM (SELECT id, endpoint_id, merchant_id, attempts FROM {d} "
            "WHERE status = 'pending' AND endpoint_id = %s AND next_attempt_at <= %s "
            f"ORDER BY next_attempt_at, id LIMIT %s{lock}) AS t{len(parts)}"
        )
        params += [source.endpoint_id, _param(now), source.given]
    with connection.cursor() as cursor:
        # SQLite allows 500 terms in one compound SELECT: a claim for a crowd of endpoints
        # runs in chunks.
        for start in range(0, len(parts), UNION_CHUNK):
            cursor.execute(
                " UNION ALL ".join(parts[start : start + UNION_CHUNK]),
                params[start * 3 : (start + UNION_CHUNK) * 3],
            )
            for pk, endpoint_id, merchant_id, attempts in cursor.fetchall():
                rows.append(_Row(pk, endpoint_id, merchant_id, attempts, timeouts[endpoint_id]))
    return rows


def _within_caps(rows: list[_Row], sources: list[_Source], load: Load) -> list[_Row]:
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


def _mark(token: str, rows: list[_Row], now: datetime, *, due: bool = True) -> None:
    """Make the chosen rows ours if they are still pending (and still due).

    The lease covers one request from now (its deadline plus a margin), by the database's
    clock; a dead worker's claims come back after it. Written by hand: building the ORM's
    UPDATE cost more than running it, on every claim.
    """
    by_lease: dict[float, list[int]] = defaultdict(list)
    for row in rows:
        by_lease[row.timeout].append(row.id)
    margin = settings.WEBHOOK_LEASE_MARGIN_SECONDS
    # Taken, tried and rescheduled by another worker since we looked: not due now.
    still_due = f" AND {_q('next_attempt_at')} <= %s" if due else ""
    with connection.cursor() as cursor:
        for timeout, ids in by_lease.items():
            cursor.execute(
                f"UPDATE {_table(Delivery)} SET {_q('status')} = 'delivering', "
                f"{_q('claimed_by')} = %s, {_q('claimed_until')} = %s, "
                f"{_q('attempts')} = {_q('attempts')} + 1, {_q('last_attempt_at')} = %s "
                f"WHERE {_q('id')} IN ({', '.join(['%s'] * len(ids))}) "
                f"AND {_q('status')} = 'pending'{still_due}",
                [
                    token,
                    _param(now + timedelta(seconds=timeout + margin)),
                    _param(now),
                    *ids,
                    *([_param(now)] if due else []),
                ],
            )
