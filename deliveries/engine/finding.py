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
import time
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.utils.dateparse import parse_datetime

from deliveries.engine.choosing import RATE_HORIZON, Load, Ranking, Source
from deliveries.models import Delivery
from endpoints.models import Endpoint

DISCOVERY_SECONDS = 0.5  # how long a worker's claims reuse one scan for endpoints with work
SCAN_SHARE = 0.2  # at most this share of a worker's time goes to scanning (a longer reuse)
MAX_FRESH = 500  # endpoints told fresh that one claim looks at, at most


class Discovery:
    """A worker's last scan for endpoints with due work, reused by its claims for a moment.

    Endpoints whose failure was recorded since (their breaker or due time may have moved) and
    endpoints a claim found out of work are dropped from it until the next scan.
    """

    def __init__(self) -> None:
        self.ranking: Ranking | None = None
        self.at = 0.0
        self.reuse = DISCOVERY_SECONDS  # how long this scan is reused
        self.fresh: set[int] = set()  # endpoints that just got new deliveries: look now
        # When each endpoint held back by its rate limit may send next (database time).
        self.paced: dict[int, datetime] = {}
        self.one_offs = True  # claims from it take due one-off deliveries too

    def expire(self) -> None:
        """The next claim scans afresh."""
        self.ranking = None

    @property
    def expired(self) -> bool:
        return self.ranking is None

    def told(self, fresh: set[int]) -> Discovery:
        """A discovery of only these endpoints (just told of by emits), for a claim of their
        own; `merge` takes back what it did not exhaust."""
        only = Discovery()
        # Never due for a scan (that is this discovery's), nor for one-off deliveries.
        only.ranking, only.at, only.reuse = Ranking([]), time.monotonic(), math.inf
        only.fresh, only.paced, only.one_offs = set(fresh), self.paced, False
        return only

    def merge(self, other: Discovery) -> None:
        """Endpoints another discovery still holds (with work left) join this one's, first."""
        if self.ranking is not None and other.ranking is not None:
            for source in other.ranking.sources():
                self.ranking.add(source)

    def forget(self, endpoint_ids: set[int]) -> None:
        if self.ranking is not None:
            for endpoint_id in endpoint_ids:
                self.ranking.remove(endpoint_id)

    def pace(self, next_at: dict[int, datetime]) -> None:
        """Endpoints a claim held back by their rate limit: due again at their next send."""
        self.paced.update(next_at)
        if self.ranking is None:
            return
        for endpoint_id, at in next_at.items():
            source = self.ranking.by_endpoint.get(endpoint_id)
            if source is not None:
                source.due = at - RATE_HORIZON
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
    # SQLite plans by the statistics of its last ANALYZE. Taken while there was one endpoint
    # and it held a large backlog, they had it scan every endpoint for every endpoint with
    # work (10,000: 3 to 9 s a scan) and step through an endpoint's finished rows to find its
    # pending ones. So there the skip scan names its index, and the endpoints are matched
    # against the list of those with work (one pass over the endpoints: 13 ms); PostgreSQL
    # keeps its statistics current and joins them.
    sqlite = connection.vendor == "sqlite"
    due_index = " INDEXED BY delivery_endpoint_due" if sqlite else ""
    with_work = "e.id IN (SELECT eid FROM ready)" if sqlite else "e.id = ready.eid"
    return f"""
        WITH RECURSIVE ready(eid) AS (
            SELECT MIN(endpoint_id) FROM {d}{due_index}
            WHERE status = 'pending' AND endpoint_id IS NOT NULL
            UNION ALL
            SELECT (SELECT MIN(endpoint_id) FROM {d}{due_index}
                    WHERE status = 'pending' AND endpoint_id > ready.eid)
            FROM ready WHERE ready.eid IS NOT NULL
        )
        {columns}
        FROM {e} e{"" if sqlite else " JOIN ready ON TRUE"}
        WHERE {with_work} AND e.is_enabled
    """


def discover(
    now: datetime, slots: int, load: Load, discovery: Discovery | None
) -> tuple[Ranking, list[Source]]:
    """The endpoints with due work for one claim (a scan, or a worker's recent one), ranked,
    and the due one-off deliveries.

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
        sources = endpoint_sources(now, load)
        _count_others(sources, load)
        return Ranking(sources), one_offs(now, slots)
    if discovery.ranking is None or time.monotonic() - discovery.at > discovery.reuse:
        started = time.monotonic()
        sources = endpoint_sources(now, load, full=True)
        _count_others(sources, load)
        discovery.ranking = Ranking(sources)
        discovery.at = time.monotonic()
        discovery.reuse = max(DISCOVERY_SECONDS, (discovery.at - started) / SCAN_SHARE)
        discovery.fresh.clear()
    elif discovery.fresh:
        found = endpoint_sources(now, load, only=discovery.fresh, full=True)
        discovery.fresh.clear()
        _count_others(found, load)
        for source in found:
            discovery.ranking.add(source)
    return discovery.ranking, one_offs(now, slots) if discovery.one_offs else []


def _count_others(sources: list[Source], load: Load) -> None:
    for source in sources:
        # What other workers had in flight; this worker's own count is known exactly.
        source.others = max(0, source.busy - load.by_endpoint.get(source.endpoint_id, 0))


def forget_exhausted(
    discovery: Discovery | None,
    chosen: list[Source],
    more: set[int],
    paced: dict[int, datetime],
) -> None:
    """Keep a reused scan honest: endpoints a claim found with no due work left beyond what
    it took (or that another worker was claiming for) are dropped from it until the next
    scan, so the next claim does not offer them a slot; those held back by their rate limit
    stay, due at their next send."""
    if discovery is None:
        return
    discovery.pace(paced)
    keep = more | set(paced)
    discovery.forget({s.endpoint_id for s in chosen if s.endpoint_id and s.endpoint_id not in keep})


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


def endpoint_sources(
    now: datetime, load: Load, only: set[int] | None = None, *, full: bool = False
) -> list[Source]:
    """Endpoints with due work and room under their cap (a skip scan: one probe each), or
    those of `only` that have; with `full`, those at their cap too (a scan that claims
    reuse: its endpoints' sends finish meanwhile, and one that left them out found nothing
    to claim once they had, so a worker went idle for a second beside a backlog)."""
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
            if full or busy < cap:
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
