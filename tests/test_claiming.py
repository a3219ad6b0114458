"""A claim's cost does not grow with a parked endpoint's backlog, nor with the crowd.

Oldest-first claims walked a dead endpoint's due rows on every claim; with 100,000 of them
every merchant's claims paid for it. Claims now find endpoints with due work by a skip scan
over the per-endpoint due index and skip parked endpoints without reading their rows. A
worker's claims reuse one scan for a moment: each looks at only as many merchants as it can
serve, drops endpoints it emptied, and a scan taken while an endpoint was at its cap still
holds it (a pump went idle beside a backlog).
"""

from __future__ import annotations

import time
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
from tests.conftest import Answer, Receiver

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


def _one_due_each(count: int, make: Callable[..., Endpoint]) -> list[Merchant]:
    shops = Merchant.objects.bulk_create(Merchant(name=f"Shop {n}") for n in range(count))
    for n, shop in enumerate(shops):
        endpoint = make(f"http://127.0.0.1:9/{n}", merchant=shop)
        event = Event.objects.create_event(shop, "receipts.update", {"n": n})
        at = timezone.now() - timedelta(seconds=count + 60 - n)  # oldest first
        Delivery.objects.create(
            merchant=shop, event=event, endpoint=endpoint, next_attempt_at=at, created_at=at
        )
    return shops


def test_it_offers_no_slot_to_an_endpoint_the_last_claim_emptied(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    from deliveries.engine.claiming import Discovery, Load, claim

    _one_due_each(4, make_endpoint)
    discovery = Discovery()
    discovery.reuse = 60.0  # both claims use one scan, as a busy worker's do

    first = claim("w1", 2, Load(capacity=100), discovery=discovery)
    second = claim("w1", 2, Load(capacity=100), discovery=discovery)

    # The first claim's endpoints had nothing more: the second takes the other two (offered
    # to the emptied ones again, its two slots found nothing).
    assert len(first) == len(second) == 2
    assert {d.endpoint_id for d in first}.isdisjoint({d.endpoint_id for d in second})


def test_it_looks_at_only_as_many_merchants_as_a_claim_can_serve() -> None:
    from deliveries.engine.choosing import Load, Ranking, Source, allocate

    now = timezone.now()
    sources = [
        Source(merchant_id=n, due=now - timedelta(seconds=n % 600), cap=10, endpoint_id=n)
        for n in range(1, 10_001)
    ]
    for source in sources:
        source.given = -1  # a claim resets what it looks at
    ranking = Ranking(sources)

    chosen = allocate(ranking, [], 100, Load(capacity=1000), now)

    looked_at = sum(source.given != -1 for source in sources)
    assert len(chosen) == 100
    # Every merchant has nothing in flight: no merchant past the first hundred could be
    # served before them, so the claim does not look at the other 9,900.
    assert looked_at == 100


def test_it_keeps_claiming_beside_a_backlog_its_own_sends_held_at_their_cap(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deliveries.engine import finding
    from deliveries.engine.pumping import Pump

    # A scan every 0.6 s, each answer after 0.9 s: a scan happens while the endpoint is at its
    # cap, and is still in use once the answers are recorded.
    monkeypatch.setattr(finding, "DISCOVERY_SECONDS", 0.6)
    receiver.default = Answer(delay=0.9)
    make_endpoint(receiver.url("/capped"), max_in_flight=2)
    for n in range(6):
        emit(merchant, "receipts.update", {"n": n})

    class Never:
        requested = False

    idle = Pump(capacity=20).serve(Never(), time.monotonic() + 30)

    # It stops only once nothing is left: a scan that left out the endpoint at its cap had
    # the pump go idle (for a second, till a wake-up) with four deliveries due.
    assert idle
    assert Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).count() == 6


def test_it_scans_endpoints_quickly_under_statistics_of_another_shape(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's planner: PostgreSQL's statistics are kept by autovacuum")
    from deliveries.engine.claiming import Load
    from deliveries.engine.finding import endpoint_sources

    _one_due_each(1_000, make_endpoint)
    with connection.cursor() as cursor:
        # What ANALYZE left when one endpoint held 300,000 rows: one endpoint, and every index
        # of the delivery table says an endpoint has 300,000 of them. SQLite then joined every
        # endpoint to every endpoint with work.
        cursor.execute("ANALYZE")
        planted = {
            Delivery._meta.db_table: "300000 300000 300000 1",
            Endpoint._meta.db_table: "1 1 1 1",
        }
        for table, stat in planted.items():
            cursor.execute("DELETE FROM sqlite_stat1 WHERE tbl = %s", [table])
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s", [table]
            )
            for (index,) in cursor.fetchall():
                cursor.execute("INSERT INTO sqlite_stat1 VALUES (%s, %s, %s)", [table, index, stat])
            cursor.execute(
                "INSERT INTO sqlite_stat1 VALUES (%s, NULL, %s)", [table, stat.split()[0]]
            )
        cursor.execute("ANALYZE sqlite_schema")  # load the planted statistics

    with rows_read() as steps:
        found = endpoint_sources(timezone.now(), Load(capacity=100))

    assert len(found) == 1_000
    # About 9,000 ticks of 10 instructions; with the endpoints joined to those with work by
    # the planted statistics, 408,000.
    assert steps[0] < 100_000


def test_it_wakes_a_pump_waiting_between_two_claims() -> None:
    import threading

    from deliveries.engine import pump_thread

    running = pump_thread.start()
    try:
        wait = time.monotonic() + 10
        while running.pump is None and time.monotonic() < wait:
            time.sleep(0.01)
        assert running.pump is not None
        woken = threading.Event()

        def between_claims() -> None:
            running.pump.senders.wait(30)  # as the pump waits after a claim found nothing
            woken.set()

        threading.Thread(target=between_claims, daemon=True).start()
        time.sleep(0.2)
        pump_thread.wake()  # what a new event's kick does in the worker

        # Not after the wait's 30 s: an event emitted then would have waited for it.
        assert woken.wait(10)
    finally:
        pump_thread.stop()
