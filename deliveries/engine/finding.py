"""Finding work: which endpoints have due deliveries, for claims (and health checks).

Endpoints with due work are found by a skip scan over the per-endpoint due index (one probe
per endpoint), so a dead endpoint's 100,000 due rows are never walked. A worker's claims
reuse one scan for DISCOVERY_SECONDS (less what they exhausted, and endpoints whose failure
was recorded meanwhile), so claiming every few milliseconds does not scan every endpoint with
work every few milliseconds. An endpoint whose breaker is open is left out (one probe once its
pause ends); one held by its rate limit is due when its next send may go.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.utils.dateparse import parse_datetime

from deliveries.models import Delivery
from endpoints.models import Endpoint
from lib import http

DISCOVERY_SECONDS = 0.5  # how long a worker's claims reuse one scan for endpoints with work
SCAN_SHARE = 0.2  # at most this share of a worker's time goes to scanning (a longer reuse)
MAX_FRESH = 500  # endpoints told fresh that one claim looks at, at most
# How far ahead a claim may take a rate-limited endpoint's next sends: each then waits for
# its moment on the event loop (deliveries/engine/pacing.py).
RATE_HORIZON = timedelta(seconds=0.25)


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
class Source:
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
    rate: int | None = None  # its rate limit, deliveries per second
    ordered: bool = False  # it has an ordering key
    # Oldest first by the second, in a random order within one: two workers that scanned the
    # same crowd do not both reach for the same endpoints first (half their claims found
    # nothing left).
    order: tuple[int, float] = (0, 0.0)

    def __post_init__(self) -> None:
        self.order = (math.floor(self.due.timestamp()), random.random())

    @property
    def room(self) -> int:
        """Slots it may take now: under its cap, and what its rate lets one claim take."""
        room = self.cap - self.busy
        if self.rate is not None:
            room = min(room, math.ceil(self.rate * RATE_HORIZON.total_seconds()))
        return room


class Discovery:
    """A worker's last scan for endpoints with due work, reused by its claims for a moment.

    Endpoints whose failure was recorded since (their breaker or due time may have moved) and
    endpoints a claim found short of work are dropped from it until the next scan.
    """

    def __init__(self) -> None:
        self.sources: list[Source] | None = None
        self.at = 0.0
        self.reuse = DISCOVERY_SECONDS  # how long this scan is reused
        self.fresh: set[int] = set()  # endpoints that just got new deliveries: look now
        # When each endpoint held back by its rate limit may send next (database time).
        self.paced: dict[int, datetime] = {}

    def forget(self, endpoint_ids: set[int]) -> None:
        if self.sources and endpoint_ids:
            self.sources = [s for s in self.sources if s.endpoint_id not in endpoint_ids]

    def pace(self, next_at: dict[int, datetime]) -> None:
        """Endpoints a claim held back by their rate limit: due again at their next send."""
        self.paced.update(next_at)
        for source in self.sources or []:
            if source.endpoint_id in next_at:
                source.due = next_at[source.endpoint_id] - RATE_HORIZON
                source.order = (math.floor(source.due.timestamp()), source.order[1])

    def rate_pause(self, now: datetime) -> float | None:
        """Seconds until an endpoint held back by its rate limit may send (None: none is)."""
        self.paced = {e: at for e, at in self.paced.items() if at - RATE_HORIZON > now}
        if not self.paced:
            return None
        return max(0.0, (min(self.paced.values()) - RATE_HORIZON - now).total_seconds())


def q(name: str) -> str:
    return connection.ops.quote_name(name)


def table(model: Any) -> str:
    return q(model._meta.db_table)


def when(value: Any) -> datetime | None:
    """An aware datetime from a raw query: SQLite hands back text, or a naive UTC datetime."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(value)
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def param(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _ready_endpoints_sql(excluded: int, only: int = 0) -> str:
    """Endpoints with pending work: all of them (a skip scan), or `only` that many given ids."""
    # 'pending' is written out, not bound: SQLite uses a partial index only for a literal.
    d, e = table(Delivery), table(Endpoint)
    not_mine = f"AND id NOT IN ({', '.join(['%s'] * excluded)})" if excluded else ""
    columns = f"""
        SELECT e.id, e.merchant_id, e.max_in_flight, e.concurrency_limit, e.timeout_seconds,
               e.breaker_state, e.breaker_probe_at, e.rate_limit, e.rate_next_at,
               e.ordering_key,
               (SELECT next_attempt_at FROM {d}
                WHERE status = 'pending' AND endpoint_id = e.id AND next_attempt_at IS NOT NULL
                ORDER BY endpoint_id, next_attempt_at LIMIT 1) AS due,
               (SELECT COUNT(*) FROM {d}
                WHERE status = 'delivering' AND endpoint_id = e.id {not_mine}) AS busy
    """
    if only:
        return f"{columns} FROM {e} e WHERE e.id IN ({', '.join(['%s'] * only)}) AND e.is_enabled"
    return f"""
        WITH RECURSIVE ready(eid) AS (
            SELECT MIN(endpoint_id) FROM {d}
            WHERE status = 'pending' AND endpoint_id IS NOT NULL
            UNION ALL
            SELECT (SELECT MIN(endpoint_id) FROM {d}
                    WHERE status = 'pending' AND endpoint_id > ready.eid)
            FROM ready WHERE ready.eid IS NOT NULL
        )
        {columns}
        FROM ready JOIN {e} e ON e.id = ready.eid
        WHERE e.is_enabled
    """


def discover(now: datetime, slots: int, load: Load, discovery: Discovery | None) -> list[Source]:
    """The endpoints with due work for one claim: a scan, or a worker's recent one.

    A reused scan is safe: the claim itself re-checks every chosen row (still pending, still
    due) and every cap (under the lock or the write lock); at worst a slot goes unused until
    the next claim. Endpoints that just got new deliveries (`Discovery.fresh`, told by emits)
    are looked at at once, so a merchant's new event does not wait for the next scan; other
    new work (a retry coming due) is found by the next scan. A scan is reused for
    DISCOVERY_SECONDS, or for SCAN_SHARE's inverse times as long as it took when that is
    longer (10,000 endpoints with work took 0.37 s to scan on PostgreSQL), so scanning never
    takes more than about a fifth of a worker's claiming.
    """
    if discovery is None:
        return all_sources(now, slots, load)
    if discovery.sources is None or time.monotonic() - discovery.at > discovery.reuse:
        started = time.monotonic()
        discovery.sources = endpoint_sources(now, load)
        discovery.at = time.monotonic()
        discovery.reuse = max(DISCOVERY_SECONDS, (discovery.at - started) / SCAN_SHARE)
        discovery.fresh.clear()
        _count_others(discovery.sources, load)
    elif discovery.fresh:
        found = endpoint_sources(now, load, only=discovery.fresh)
        discovery.fresh.clear()
        _count_others(found, load)
        discovery.forget({s.endpoint_id for s in found if s.endpoint_id is not None})
        discovery.sources += found
    # The scan's own sources, made ready for this claim in place (a worker's claims run one
    # at a time): copying 10,000 of them cost more than the rest of a claim.
    reused = []
    by_endpoint, held = load.by_endpoint, load.held
    for source in discovery.sources:
        if source.due <= now and not held.get(source.endpoint_id or 0):
            source.given = 0
            source.busy = source.others + by_endpoint.get(source.endpoint_id, 0)
            reused.append(source)
    return reused + one_offs(now, slots)


def _count_others(sources: list[Source], load: Load) -> None:
    for source in sources:
        # What other workers had in flight; this worker's own count is known exactly.
        source.others = max(0, source.busy - load.by_endpoint.get(source.endpoint_id, 0))


def forget_exhausted(
    discovery: Discovery | None,
    chosen: list[Source],
    taken: Counter[int],
    paced: dict[int, datetime],
) -> None:
    """Keep a reused scan honest: endpoints that had less due work than they were given (or
    that another worker was claiming for) are dropped from it until the next scan; those
    held back by their rate limit stay, due at their next send."""
    if discovery is None:
        return
    discovery.pace(paced)
    if discovery.sources:
        discovery.forget(
            {
                s.endpoint_id
                for s in chosen
                if s.endpoint_id and taken[s.endpoint_id] < s.given and s.endpoint_id not in paced
            }
        )


def one_offs(now: datetime, slots: int) -> list[Source]:
    """Due one-off deliveries (a per-event URL: no endpoint, no cap)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, merchant_id, attempts, next_attempt_at FROM {table(Delivery)} "
            "WHERE status = 'pending' AND endpoint_id IS NULL AND next_attempt_at <= %s "
            "ORDER BY next_attempt_at LIMIT %s",
            [param(now), slots],
        )
        return [
            Source(merchant_id, when(due) or now, 1, delivery=(pk, attempts))
            for pk, merchant_id, attempts, due in cursor.fetchall()
        ]


def all_sources(now: datetime, slots: int, load: Load) -> list[Source]:
    """Endpoints with due work and room under their cap, and due one-off deliveries."""
    return endpoint_sources(now, load) + one_offs(now, slots)


def endpoint_sources(now: datetime, load: Load, only: set[int] | None = None) -> list[Source]:
    """Endpoints with due work and room under their cap (a skip scan: one probe each), or
    those of `only` that have."""
    sources: list[Source] = []
    ids = sorted(only or ())
    with connection.cursor() as cursor:
        cursor.execute(
            _ready_endpoints_sql(len(load.unrecorded), len(ids)), [*load.unrecorded, *ids]
        )
        rows = cursor.fetchall()
        for row in rows:
            eid, merchant, cap, limit, timeout, state, probe_at, rate, rate_at, key, due, busy = row
            due, probe_at, rate_at = when(due), when(probe_at), when(rate_at)
            cap = max(1, min(cap, limit)) if limit is not None else cap  # adaptive: see breaker
            if due is not None and rate and rate_at is not None:
                due = max(due, rate_at - RATE_HORIZON)  # held back by its rate limit till then
            if due is None or due > now or load.held.get(eid):
                continue
            if state == Endpoint.BreakerState.OPEN:
                if probe_at is not None and probe_at > now:
                    continue  # parked: its backlog waits, holding no thread
                cap = 1  # half-open: one probe at a time
            if busy < cap:
                sources.append(
                    Source(
                        merchant,
                        due,
                        cap,
                        busy,
                        endpoint_id=eid,
                        timeout=float(timeout),
                        rate=rate or None,
                        ordered=bool(key),
                    )
                )
    return sources
