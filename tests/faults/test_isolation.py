"""One merchant's receivers never delay, duplicate or lose another merchant's deliveries.

Issue 13, items 2-4, with real `run_worker` processes and real hostile receivers:
a claim holds only what is sent now (no second send while the first may be in flight), an
endpoint's cap holds across workers, claims are fair across merchants and keep threads for
first attempts, and a circuit breaker parks an endpoint that never answers.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant, User
from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

Start = Callable[..., subprocess.Popen[bytes]]


def test_it_never_sends_a_delivery_again_while_its_first_send_is_in_flight(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Start,
) -> None:
    # Answers take 2.5 s; the lease is the 4-second deadline plus a 1-second margin. A claim
    # that waited behind the endpoint's cap of 1 outlived its lease and was sent again by the
    # other worker while the first send was still in flight.
    make_endpoint(receiver.url(), timeout_seconds=4, max_in_flight=1)
    receiver.default = Answer(200, b"ok", delay=2.5)
    events = [emit(merchant, "receipts.update", {"n": n}) for n in range(4)]

    start_worker()
    start_worker()
    wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 4, timeout=60)
    time.sleep(1.5)  # a second send would be on its way by now

    sent = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert sent == Counter({e.public_id: 1 for e in events})
    assert receiver.most_in_flight == 1


def test_it_holds_an_endpoints_cap_across_workers(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Start,
) -> None:
    make_endpoint(receiver.url(), timeout_seconds=10, max_in_flight=2)
    receiver.default = Answer(200, b"ok", delay=0.7)
    for n in range(16):
        emit(merchant, "receipts.update", {"n": n})

    start_worker()
    start_worker()
    wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 16, timeout=60)

    assert receiver.most_in_flight == 2
    assert len(receiver.requests) == 16


def test_it_delivers_another_merchants_new_event_while_a_backlog_hangs(
    merchant: Merchant,
    outsider_merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Start,
) -> None:
    hanging = Receiver()
    try:
        # Answers come after the 30-second deadline, so nothing is retried during the test and
        # what the receiver holds open is what the worker holds in flight.
        hanging.default = Answer(200, b"late", delay=45)
        for n in range(6):
            make_endpoint(hanging.url(f"/hang/{n}"), timeout_seconds=30, max_in_flight=10)
        for n in range(20):
            emit(merchant, "receipts.update", {"n": n})  # 120 deliveries that hang
        innocent = make_endpoint(receiver.url("/innocent"), merchant=outsider_merchant)

        start_worker(WEBHOOK_MAX_IN_FLIGHT="8")
        wait_until(lambda: hanging.in_flight >= 4, timeout=30, what="the backlog in flight")
        posted = time.time()
        event = emit(outsider_merchant, "receipts.update", {"innocent": True})
        wait_until(lambda: len(receiver.requests) == 1, timeout=15, what="the innocent delivery")

        assert receiver.requests[0].headers["webhook-id"] == event.public_id
        assert receiver.requests[0].at - posted < 3  # not behind the 30-second timeouts
        wait_until(lambda: innocent.deliveries.get().status == "succeeded", timeout=5)
        assert hanging.in_flight <= 6  # the hanging merchant's share of 8 threads
    finally:
        hanging.stop()


def test_it_keeps_threads_for_first_attempts_when_retries_are_due(
    merchant: Merchant,
    outsider_merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
) -> None:
    for n in range(4):
        make_endpoint(receiver.url(f"/retrying/{n}"))
    for n in range(10):
        emit(merchant, "receipts.update", {"n": n})
    Delivery.objects.update(attempts=3)  # all of them are retries now
    first = make_endpoint(receiver.url("/first"), merchant=outsider_merchant)
    emit(outsider_merchant, "receipts.update", {"first": True})

    from deliveries.engine.claiming import Load, claim

    # 4 threads: retries may hold 3 of them; this worker already has 3 retries in flight.
    claimed = claim("w1", 4, Load(capacity=4, retries=3))

    assert [d.endpoint_id for d in claimed] == [first.pk]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_parks_an_endpoint_that_refuses_connections_then_drains_it_at_its_cap(
    merchant: Merchant,
    owner: User,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Start,
) -> None:
    port = _closed_port()
    endpoint = make_endpoint(f"http://127.0.0.1:{port}/hook", timeout_seconds=5, max_in_flight=2)
    for n in range(30):
        emit(merchant, "receipts.update", {"n": n})
    _key, raw = ApiKey.issue(merchant, "ops")
    api = Client(headers={"authorization": f"Bearer {raw}"})

    start_worker(
        WEBHOOK_BREAKER_THRESHOLD="3",
        WEBHOOK_BREAKER_PAUSE_SECONDS="3",
        WEBHOOK_RETRY_BASE_SECONDS="1",
    )
    wait_until(lambda: Endpoint.objects.get(pk=endpoint.pk).breaker_state == "open", timeout=30)
    parked = Endpoint.objects.get(pk=endpoint.pk)
    shown = api.get(f"/api/v1/webhooks/{endpoint.public_id}").json()["webhook"]
    assert shown["circuit_breaker"]["state"] == "open"
    assert shown["circuit_breaker"]["next_probe_at"]
    dashboard = Client()
    dashboard.force_login(owner)
    page = dashboard.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert "Paused" in page and "we try again at" in page
    tried = Delivery.objects.filter(endpoint=endpoint, attempts__gt=0).count()
    assert tried <= 5  # the backlog waits instead of holding threads
    assert parked.breaker_probe_at is not None

    receiver = Receiver(port=port)  # the receiver comes back
    try:
        wait_until(
            lambda: Delivery.objects.filter(endpoint=endpoint, status="succeeded").count() == 30,
            timeout=60,
        )
        assert Endpoint.objects.get(pk=endpoint.pk).breaker_state == "closed"
        assert receiver.most_in_flight <= 2
    finally:
        receiver.stop()


def test_it_keeps_claiming_while_a_pump_hands_over_with_hanging_sends_in_flight(
    merchant: Merchant,
    outsider_merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Start,
) -> None:
    # A pump job hands over every WEBHOOK_PUMP_SECONDS (2 here). It used to wait for its
    # sends in flight first: behind requests that hang until their 20-second deadline the
    # worker claimed nothing for anyone, and the innocent merchant's events waited ~20 s.
    hanging = Receiver()
    try:
        hanging.default = Answer(200, b"late", delay=30)
        for n in range(3):
            make_endpoint(hanging.url(f"/hang/{n}"), timeout_seconds=20, max_in_flight=10)
        for n in range(10):
            emit(merchant, "receipts.update", {"n": n})
        make_endpoint(receiver.url("/innocent"), merchant=outsider_merchant)

        start_worker(WEBHOOK_MAX_IN_FLIGHT="8", WEBHOOK_PUMP_SECONDS="2")
        wait_until(lambda: hanging.in_flight >= 4, timeout=30, what="the backlog in flight")
        lags = []
        for n in range(4):  # spread over two hand-overs
            posted = time.time()
            emit(outsider_merchant, "receipts.update", {"innocent": n})
            wait_until(lambda n=n: len(receiver.requests) == n + 1, timeout=25, what="a delivery")
            lags.append(receiver.requests[n].at - posted)
            time.sleep(1)

        assert hanging.in_flight >= 4  # all of it happened while the first sends still hung
        assert max(lags) < 3, lags
        ids = Counter((r.path, r.headers["webhook-id"]) for r in hanging.requests)
        assert set(ids.values()) == {1}  # each hanging delivery sent once
    finally:
        hanging.stop()
