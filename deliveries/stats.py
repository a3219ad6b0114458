"""Delivery statistics for the dashboard, built to stay fast with millions of rows.

No index holds both a delivery's status and its creation time, and a COUNT over an
endpoint's whole history would read every row. So the time window is turned into a range
of ids first: one seek per hour boundary on the (endpoint, created_at) index finds the
first delivery created at or after it. Counting by status within an id range is then an
index-only range scan of (endpoint, status, -id), and each row in the window is read
once, whichever status it has.

Ids and creation times rise together: a row inserted a few milliseconds out of order by
a concurrent emitter may land in the neighbouring hour, which a chart can live with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from deliveries.models import Delivery

WINDOW = timedelta(hours=24)

# Statuses that are final, counted from the (endpoint, status, -id) index alone.
_FINAL = (Delivery.Status.SUCCEEDED, Delivery.Status.FAILED, Delivery.Status.CANCELLED)
# Deliveries still under way: split by whether an attempt already failed (retrying) or not
# (waiting for the first attempt), which needs each row's attempt count.
_UNFINISHED = (Delivery.Status.PENDING, Delivery.Status.DELIVERING)


@dataclass
class Counts:
    """Deliveries by what happened to them; each delivery is in exactly one of the first five.

    A delivery retrying after a 500 or a refused connection is `retrying`, never lumped with
    those not tried yet (`waiting`) or `cancelled`: the chart draws each in its own colour.
    """

    succeeded: int = 0
    failed: int = 0
    retrying: int = 0
    waiting: int = 0
    cancelled: int = 0
    # Filled for whole windows only (the table and the page's headline), not per hour.
    attempts: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.retrying + self.waiting + self.cancelled

    @property
    def tried(self) -> int:
        """Deliveries with an outcome so far: succeeded, failed, or failed and retrying."""
        return self.succeeded + self.failed + self.retrying

    @property
    def success_rate(self) -> float | None:
        """Succeeded out of those tried, in percent; None before any attempt.

        A delivery that is retrying after a 500 counts against the rate: leaving it out
        showed "100% succeeded" for a webhook whose every delivery was failing.
        """
        return None if self.tried == 0 else 100.0 * self.succeeded / self.tried

    @property
    def failed_attempts(self) -> int:
        """Attempts that did not succeed: every attempt but the one that succeeded."""
        return max(self.attempts - self.succeeded, 0)

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.succeeded + other.succeeded,
            self.failed + other.failed,
            self.retrying + other.retrying,
            self.waiting + other.waiting,
            self.cancelled + other.cancelled,
            self.attempts + other.attempts,
        )


@dataclass
class Bucket:
    start: datetime
    end: datetime
    counts: Counts = field(default_factory=Counts)


def window_start(now: datetime) -> datetime:
    return now - WINDOW


def hour_boundaries(now: datetime) -> list[datetime]:
    """The edges of the chart's bars: the window's start, every o'clock in it, and now."""
    start = window_start(now)
    edges = [start]
    hour = start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    while hour < now:
        edges.append(hour)
        hour += timedelta(hours=1)
    edges.append(now)
    return edges


def _first_id_at_or_after(endpoint_id: int, moment: datetime) -> int | None:
    return (
        Delivery.objects.filter(endpoint_id=endpoint_id, created_at__gte=moment)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
        .first()
    )


def counts_between(endpoint_id: int, edges: Sequence[datetime]) -> list[Counts]:
    """Deliveries of one endpoint per status group between consecutive `edges`.

    Args:
        endpoint_id: the endpoint's primary key.
        edges: increasing times; the last one is taken to be "now" (open-ended), so
            deliveries created during the call are counted in the last interval.

    Returns:
        One Counts per interval, len(edges) - 1 of them.
    """
    # The last edge is open, so its id bound is "none".
    bounds = [_first_id_at_or_after(endpoint_id, edge) for edge in edges[:-1]]
    result = [Counts() for _ in bounds]
    for i, low in enumerate(bounds):
        if low is None:
            break  # nothing created since this edge, so nothing after later ones either
        high = next((b for b in bounds[i + 1 :] if b is not None), None)
        if high == low:
            continue  # the first delivery after this edge is after the next one too
        id_range = Q(id__gte=low) if high is None else Q(id__gte=low, id__lt=high)
        in_range = Delivery.objects.filter(id_range, endpoint_id=endpoint_id)
        final = (
            in_range.filter(status__in=_FINAL)
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        for status, n in final:
            setattr(result[i], status, n)
        unfinished = in_range.filter(status__in=_UNFINISHED).aggregate(
            all=Count("id"), tried=Count("id", filter=Q(attempts__gt=0))
        )
        result[i].retrying = unfinished["tried"]
        result[i].waiting = unfinished["all"] - unfinished["tried"]
    return result


def hourly(endpoint_id: int, now: datetime | None = None) -> list[Bucket]:
    """Deliveries per hour over the last 24 hours, oldest first (a partial hour at each end)."""
    edges = hour_boundaries(now or timezone.now())
    counts = counts_between(endpoint_id, edges)
    return [Bucket(edges[i], edges[i + 1], c) for i, c in enumerate(counts)]


def last_24_hours(endpoint_ids: Iterable[int], now: datetime | None = None) -> dict[int, Counts]:
    """The last 24 hours of each endpoint, with its attempts counted."""
    now = now or timezone.now()
    edges = [window_start(now), now]
    result = {}
    for pk in endpoint_ids:
        counts = counts_between(pk, edges)[0]
        _add_attempt_totals(pk, edges[0], counts)
        result[pk] = counts
    return result


def whole_window(endpoint_id: int, buckets: Sequence[Bucket]) -> Counts:
    """The last 24 hours from `hourly`'s buckets, with attempts counted.

    The webhook page shows both: counting the window again read a busy endpoint's whole
    day a second time (55 ms of its page with a million rows).
    """
    counts = sum((b.counts for b in buckets), Counts())
    if buckets:
        _add_attempt_totals(endpoint_id, buckets[0].start, counts)
    return counts


def _add_attempt_totals(endpoint_id: int, since: datetime, counts: Counts) -> None:
    """Attempts made in the window, without reading every row of it.

    A sum over all of a busy endpoint's deliveries read a million rows for the page (400 ms);
    these read only deliveries that are not succeeded (the (endpoint, status) index) and
    succeeded ones that took more than one attempt (a partial index), both few. SQLite is
    told which index to use: its planner preferred walking the endpoint's rows.
    """
    low = _first_id_at_or_after(endpoint_id, since)
    if low is None:
        return
    unsucceeded = _one_row(
        "SELECT COALESCE(SUM(attempts), 0) FROM {table} {hint:delivery_endpoint_status} "
        "WHERE endpoint_id = %s "
        "AND status IN ('failed', 'pending', 'delivering', 'cancelled') AND {table}.\"id\" >= %s",
        [endpoint_id, low],
    )
    retried = _one_row(
        "SELECT COALESCE(SUM(attempts), 0), COUNT(*) FROM {table} "
        '{hint:delivery_endpoint_retried} WHERE endpoint_id = %s AND {table}."id" >= %s '
        "AND attempts > 1 AND status = 'succeeded'",
        [endpoint_id, low],
    )
    # `failed_attempts` is attempts - succeeded: of a succeeded delivery every attempt but the
    # last failed, which only the retried ones add to.
    counts.attempts = unsucceeded[0] + retried[0] - retried[1] + counts.succeeded


def _one_row(template: str, params: list[Any]) -> tuple[int, ...]:
    table = connection.ops.quote_name(Delivery._meta.db_table)
    sqlite = connection.vendor == "sqlite"
    sql = template.replace("{table}", table)
    for name in ("delivery_endpoint_status", "delivery_endpoint_retried"):
        sql = sql.replace("{hint:" + name + "}", f"INDEXED BY {name}" if sqlite else "")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return tuple(int(v or 0) for v in cursor.fetchone())
