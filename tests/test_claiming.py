"""A claim's cost does not grow with a parked endpoint's backlog (issue 13, item 4).

Oldest-first claims walked a dead endpoint's due rows on every claim; with 100,000 of them
every merchant's claims paid for it. Claims now find endpoints with due work by a skip scan
over the per-endpoint due index and skip parked endpoints without reading their rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Merchant
from deliveries import emit
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def rows_read() -> Iterator[list[int]]:
    """Rows of the delivery table read inside the block (PostgreSQL) or SQLite VM steps."""
    found = [0]
    if connection.vendor == "postgresql":
        with transaction.atomic():
            yield found
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) "
                    "FROM pg_stat_xact_user_tables WHERE relname = %s",
                    [Delivery._meta.db_table],
                )
                found[0] = cursor.fetchone()[0]
        return
    connection.ensure_connection()
    raw = connection.connection
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    raw.set_progress_handler(count, 10)  # one call per 10 VM instructions
    try:
        yield found
    finally:
        raw.set_progress_handler(None, 0)
        found[0] = steps[0]


def _backlog(endpoint: Endpoint, merchant: Merchant, size: int) -> None:
    event = Event.objects.create_event(merchant, "receipts.update", {"backlog": True})
    now = timezone.now() - timedelta(minutes=5)
    Delivery.objects.bulk_create(
        Delivery(
            merchant=merchant,
            event=event,
            endpoint=endpoint,
            next_attempt_at=now,
            created_at=now,
            public_id=f"dlv_backlog{n:08d}",
        )
        for n in range(size)
    )


def _claim_cost(size: int, merchant: Merchant, make: Callable[..., Endpoint]) -> tuple[int, list]:
    from deliveries.engine.claiming import Load, claim

    Delivery.objects.all().delete()
    Endpoint.objects.all().delete()
    dead = make("http://127.0.0.1:9/dead", types=("customers.update",))
    Endpoint.objects.filter(pk=dead.pk).update(
        breaker_state="open", breaker_probe_at=timezone.now() + timedelta(minutes=5)
    )
    _backlog(dead, merchant, size)
    healthy = make("http://127.0.0.1:9/healthy")
    emit(merchant, "receipts.update", {"n": 1})
    with connection.cursor() as cursor:
        # Statistics as a running database has them (autovacuum): with those taken when the
        # table held 100 rows, PostgreSQL's planner chose a sequential scan of 20,000.
        cursor.execute(f"ANALYZE {Delivery._meta.db_table}")
    with rows_read() as read:
        claimed = claim(f"w{size}", 16, Load(capacity=16))
    return read[0], [(d.endpoint_id == healthy.pk) for d in claimed]


def test_it_claims_past_a_parked_backlog_without_reading_it(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    small, claimed_small = _claim_cost(100, merchant, make_endpoint)
    large, claimed_large = _claim_cost(20_000, merchant, make_endpoint)

    assert claimed_small == claimed_large == [True]  # only the healthy endpoint's delivery
    # Walking the backlog would read 20,000 rows (PostgreSQL) or take over 20,000 ticks of 10
    # SQLite instructions; the claim reads about as much as with 100 rows behind it.
    assert large < 2_000
    assert large <= small * 2 + 50


def test_it_gives_a_merchant_no_more_than_its_share_of_threads(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    from deliveries.engine.claiming import Load, claim

    for n in range(4):
        make_endpoint(f"http://127.0.0.1:9/{n}")
    for n in range(10):
        emit(merchant, "receipts.update", {"n": n})

    # 8 threads, a 0.75 share: 6 for one merchant, whatever else is free.
    first = claim("w1", 8, Load(capacity=8))
    load = Load(capacity=8)
    load.by_merchant[merchant.pk] = len(first)
    again = claim("w1", 2, load)

    assert len(first) == 6
    assert again == []
