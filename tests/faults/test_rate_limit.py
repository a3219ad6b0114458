"""A webhook's rate limit holds across workers, retries included, and holds no capacity.

Real `run_worker` processes (two of them, claiming for the same endpoint) and a real
receiver that notes when each request arrived. Deleting the pacing in claims
(`deliveries/engine/pacing.py`) fails each test.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Merchant
from deliveries import emit
from deliveries.engine.claiming import Load, claim
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import Answer, Received, Receiver
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def busiest_second(times: list[float]) -> int:
    """The most requests that arrived in any one second [t, t + 1)."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def warm_up(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """Two workers, each past its first request: that one also starts the worker's HTTP
    client (tens of milliseconds), which is not what these tests measure."""
    make_endpoint(receiver.url("/warm-up"), types=("inventory_levels.update",))
    start_worker()
    start_worker()
    for n in range(6):
        emit(merchant, "inventory_levels.update", {"n": n})
    wait_until(lambda: len(arrivals(receiver, "/warm-up")) == 6, 30, "warmed up")


def arrivals(receiver: Receiver, path: str) -> list[float]:
    with receiver.lock:
        return [r.at for r in receiver.requests if r.path == path]


def test_it_sends_no_more_than_the_rate_in_any_second_from_two_workers(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    limited = make_endpoint(receiver.url("/limited"), rate_limit=5, max_in_flight=50)
    warm_up(merchant, make_endpoint, receiver, start_worker)
    for n in range(30):  # a backlog, emitted at once
        emit(merchant, "receipts.update", {"n": n})
    wait_until(lambda: len(arrivals(receiver, "/limited")) == 30, 60, "the backlog delivered")
    times = sorted(arrivals(receiver, "/limited"))
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert busiest_second(times) <= 6, gaps  # 5, +1 at a window's edge
    done = Delivery.objects.filter(endpoint=limited, status="succeeded")
    wait_until(lambda: done.count() == 30, 10, "recorded")


def test_it_counts_retries_against_the_rate(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    make_endpoint(
        receiver.url("/limited"),
        rate_limit=4,
        max_in_flight=50,
        retry_policy="fixed",
        fixed_retries=1,
        fixed_cooldown_seconds=1,
    )
    warm_up(merchant, make_endpoint, receiver, start_worker)
    tried: set[str] = set()

    def fail_first_attempts(request: Received) -> Answer | None:
        if request.path != "/limited" or request.headers["webhook-id"] in tried:
            return None
        tried.add(request.headers["webhook-id"])
        return Answer(500)

    receiver.by_request = fail_first_attempts
    for n in range(12):
        emit(merchant, "receipts.update", {"n": n})
    wait_until(lambda: len(arrivals(receiver, "/limited")) == 24, 60, "first tries and retries")
    assert busiest_second(arrivals(receiver, "/limited")) <= 5  # 4, +1 at a window's edge
    done = Delivery.objects.filter(endpoint__url__endswith="/limited", status="succeeded")
    wait_until(lambda: done.count() == 12, 10, "recorded")


def test_it_keeps_the_waiting_backlog_out_of_everyone_elses_way(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    other_shop = Merchant.objects.create(name="Other shop")
    limited = make_endpoint(receiver.url("/limited"), rate_limit=5, max_in_flight=100)
    make_endpoint(receiver.url("/free"), merchant=other_shop)
    for n in range(40):
        emit(merchant, "receipts.update", {"n": n})
    start_worker()
    wait_until(lambda: len(arrivals(receiver, "/limited")) >= 2, 30, "the backlog started")
    for n in range(20):
        emit(other_shop, "receipts.update", {"n": n})
    wait_until(lambda: len(arrivals(receiver, "/free")) == 20, 30, "the other shop's events")
    # The other shop's events did not wait for the limited backlog: most of it still waits,
    # unclaimed (not one of the 40 holds a slot before its moment).
    assert len(arrivals(receiver, "/limited")) < 25, (
        len(arrivals(receiver, "/limited")),
        sorted(arrivals(receiver, "/free"))[0] - sorted(arrivals(receiver, "/limited"))[0],
    )
    # Claimed: at most the next quarter second's sends, and one whose outcome is being written.
    assert Delivery.objects.filter(endpoint=limited, status="delivering").count() <= 3


def test_it_claims_only_what_the_rate_allows_and_moves_the_next_moment_on(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/limited", rate_limit=2, max_in_flight=50)
    for n in range(10):
        emit(merchant, "receipts.update", {"n": n})
    first = claim("worker-a", 50, Load(capacity=50))
    second = claim("worker-b", 50, Load(capacity=50))  # another worker, at once
    assert len(first) == 1 and second == []
    endpoint.refresh_from_db()
    assert endpoint.rate_next_at is not None
    assert endpoint.rate_next_at > timezone.now() + timedelta(seconds=0.3)
    assert Delivery.objects.filter(status="pending").count() == 9
