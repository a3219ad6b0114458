"""Capacity no receiver can exhaust, with real workers and real hostile receivers.

Smaller versions of the benchmark's scenarios (`bench/capacity.py`): a hosting outage at many
merchants, slow receivers that do answer, a crowd of merchants with a little work each, and a
PostgreSQL restart while sends are in flight. With a thread per send (64 per worker) each of
the first three made a healthy merchant's event wait for the hanging or slow sends; the
restart dropped outcomes, and those deliveries were sent again a minute later.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django.utils import timezone

from accounts.models import Merchant
from catalogue.models import EventType
from deliveries import emit
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver
from tests.faults.conftest import wait_until
from webhooks_project import embedded_postgres

pytestmark = pytest.mark.django_db(transaction=True)

Start = Callable[..., subprocess.Popen[bytes]]


def _lag_of_one_event(merchant: Merchant, receiver: Receiver, path: str) -> float:
    """Seconds from emitting an event to its arrival at `receiver` (on `path`)."""
    before = sum(r.path == path for r in receiver.requests)
    posted = time.time()
    emit(merchant, "receipts.update", {"healthy": True})
    wait_until(
        lambda: sum(r.path == path for r in receiver.requests) > before,
        timeout=40,
        what="the healthy merchant's delivery",
    )
    return [r for r in receiver.requests if r.path == path][-1].at - posted


def _shops(count: int, prefix: str) -> list[Merchant]:
    return Merchant.objects.bulk_create(Merchant(name=f"{prefix} {n}") for n in range(count))


def test_it_delivers_a_healthy_merchants_events_while_many_merchants_receivers_hang(
    receiver: Receiver,
    outsider_merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Start,
) -> None:
    # 20 merchants' receivers hang (a hosting outage): 100 sends wait for their deadline,
    # more than a worker's 64 threads held.
    hanging = Receiver()
    try:
        hanging.default = Answer(200, b"late", delay=60)
        for n, shop in enumerate(_shops(20, "Hosted")):
            make_endpoint(hanging.url(f"/down/{n}"), merchant=shop, timeout_seconds=30)
            for m in range(5):
                emit(shop, "receipts.update", {"m": m})
        make_endpoint(receiver.url("/healthy"), merchant=outsider_merchant)

        start_worker()
        wait_until(lambda: hanging.in_flight >= 60, timeout=20, what="the outage in flight")
        lags = [_lag_of_one_event(outsider_merchant, receiver, "/healthy") for _ in range(3)]

        assert max(lags) < 3, lags
        assert hanging.in_flight == 100  # all of it while every hanging send still waited
        sent = Counter(r.headers["webhook-id"] + r.path for r in hanging.requests)
        assert set(sent.values()) == {1}  # nothing sent twice while in flight
    finally:
        hanging.stop()


def test_it_delivers_a_third_merchants_events_while_two_merchants_receivers_answer_slowly(
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Start,
) -> None:
    # Two merchants, 4 endpoints each, answering after 8 s (inside the deadline, so the
    # breaker never opens): 80 sends in flight, more than a worker's 64 threads.
    slow = Receiver()
    try:
        slow.default = Answer(200, b"slow", delay=8)
        for shop in _shops(2, "Slow"):
            for n in range(4):
                make_endpoint(slow.url(f"/slow/{shop.pk}/{n}"), merchant=shop, timeout_seconds=15)
            for m in range(10):
                emit(shop, "receipts.update", {"m": m})
        third = Merchant.objects.create(name="Third")
        make_endpoint(receiver.url("/third"), merchant=third)

        start_worker()
        wait_until(lambda: slow.in_flight >= 60, timeout=30, what="the slow sends in flight")
        lags = [_lag_of_one_event(third, receiver, "/third") for _ in range(3)]

        assert max(lags) < 3, lags
        assert slow.most_in_flight == 80  # every endpoint at its cap of 10, none past it
    finally:
        slow.stop()


def test_it_serves_a_newly_active_merchant_while_a_crowd_drains(
    transactional_db: None, receiver: Receiver, start_worker: Start
) -> None:
    # 1,200 merchants with one due delivery each, receivers answering after 0.5 s, a worker
    # with 100 sends in flight (the crowd takes 6 s to drain). Served oldest first, a merchant
    # whose event came meanwhile waited for the whole crowd.
    receiver.routes = {}
    receiver.default = Answer(200, b"ok", delay=0.5)
    shops = _shops(1200, "Crowd")
    endpoints = Endpoint.objects.bulk_create(
        Endpoint(merchant=shop, url=receiver.url(f"/crowd/{shop.pk}")) for shop in shops
    )
    due = timezone.now() - timedelta(seconds=5)
    receipts = EventType.objects.get(name="receipts.update")
    events = Event.objects.bulk_create(
        Event(merchant=shop, event_type=receipts, data={"crowd": True}, sequence=1)
        for shop in shops
    )
    Delivery.objects.bulk_create(
        Delivery(merchant=e.merchant, event=ev, endpoint=e, next_attempt_at=due, created_at=due)
        for e, ev in zip(endpoints, events, strict=True)
    )
    newcomer = Merchant.objects.create(name="Newcomer")
    Endpoint.objects.create(merchant=newcomer, url=receiver.url("/newcomer"))

    start_worker(WEBHOOK_MAX_IN_FLIGHT="100")
    wait_until(lambda: receiver.in_flight >= 50, timeout=60, what="the crowd in flight")
    lag = _lag_of_one_event(newcomer, receiver, "/newcomer")
    still_waiting = Delivery.objects.filter(status="pending", merchant__name__startswith="Crowd")

    assert lag < 3, lag
    assert still_waiting.count() > 500  # it went past the crowd, not after it


requires_postgres = pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"]
    and "pgbouncer" not in settings.DATABASES["default"]["ENGINE"],
    reason="a PostgreSQL restart needs PostgreSQL (make test-postgres runs it)",
)


def _pg_ctl(*args: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        data = cursor.fetchone()[0]
    connection.close()
    log = str(Path(data).parent / "log")  # without a log file the server writes to our pipe
    pg_ctl = str(embedded_postgres.bindir() / "pg_ctl")
    embedded_postgres.run_as_owner(
        [pg_ctl, "-D", data, "-m", "fast", "-l", log, "-w", *args], stdout=subprocess.DEVNULL
    )
    _DATA.append(data)


_DATA: list[str] = []


def _start_postgres_again() -> None:
    data = Path(_DATA[-1])
    # The server's own options, as the last start gave them (its sockets, port, settings).
    options = shlex.split((data / "postmaster.opts").read_text())[3:]
    pg_ctl = str(embedded_postgres.bindir() / "pg_ctl")
    embedded_postgres.run_as_owner(
        [pg_ctl, "-D", str(data), "-o", shlex.join(options), "-l", str(data.parent / "log"),
         "-w", "start"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _succeeded() -> int:
    """Succeeded deliveries, or -1 while the database is not back for this test either."""
    try:
        return Delivery.objects.filter(status="succeeded").count()
    except OperationalError:
        connection.close()
        return -1


@requires_postgres
def test_it_writes_outcomes_of_sends_in_flight_across_a_postgresql_restart(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Start,
) -> None:
    # 20 sends in flight (answers after 3 s) when PostgreSQL goes down; their answers come
    # while it is down; then it is back. Their outcomes used to be dropped ("could not
    # record"), and the deliveries sent again once their lease ran out.
    make_endpoint(receiver.url(), timeout_seconds=10, max_in_flight=20)
    receiver.default = Answer(200, b"ok", delay=3)
    events = [emit(merchant, "receipts.update", {"n": n}) for n in range(20)]

    start_worker(WEBHOOK_LEASE_MARGIN_SECONDS="5")
    wait_until(lambda: receiver.in_flight == 20, timeout=30, what="20 sends in flight")
    _pg_ctl("stop")
    try:
        wait_until(lambda: receiver.in_flight == 0, timeout=10, what="the answers")
        time.sleep(1)  # the recorder tries, and finds the database away
    finally:
        _start_postgres_again()
    restarted = time.monotonic()
    wait_until(lambda: _succeeded() == 20, timeout=40, what="every outcome written")
    written_after = time.monotonic() - restarted
    time.sleep(16)  # past the lease (10 s + 5 s): a delivery whose outcome was lost is resent

    sent = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert sent == Counter({e.public_id: 1 for e in events})
    assert written_after < 15  # written once the database answered, not after the lease
