"""Real worker processes killed mid-batch: nothing is lost and nothing is sent three times."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable

import pytest

from accounts.models import Merchant
from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_survives_a_worker_killed_mid_batch(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    make_endpoint(receiver.url(), timeout_seconds=5, max_in_flight=10)
    receiver.default = Answer(200, b"ok", delay=0.3)
    events = [emit(merchant, "receipts.update", {"n": n}) for n in range(100)]

    first = start_worker()
    wait_until(lambda: len(receiver.requests) >= 15, timeout=60)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert Delivery.objects.filter(status="delivering").exists()  # killed with claims held

    second = start_worker()
    wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 100, timeout=120)

    sent = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert set(sent) == {e.public_id for e in events}
    assert max(sent.values()) <= 2

    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0


def test_it_releases_or_finishes_its_batch_on_sigterm(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    make_endpoint(receiver.url(), timeout_seconds=5, max_in_flight=10)
    receiver.default = Answer(200, b"ok", delay=0.3)
    for n in range(60):
        emit(merchant, "receipts.update", {"n": n})

    worker = start_worker()
    wait_until(lambda: len(receiver.requests) >= 5, timeout=60)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert not Delivery.objects.filter(status="delivering").exists()
    assert Delivery.objects.filter(status="pending").exists()  # left for the next worker

    start_worker()
    wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 60, timeout=120)
    sent = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert max(sent.values()) == 1


def test_it_records_sends_a_handed_over_pump_left_in_flight_before_exiting(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    # Pump jobs hand over every second here without waiting for their 4-second sends: the
    # sends belong to the worker process, which finishes and records them before it exits.
    make_endpoint(receiver.url(), timeout_seconds=10, max_in_flight=10)
    receiver.default = Answer(200, b"ok", delay=4)
    for n in range(4):
        emit(merchant, "receipts.update", {"n": n})

    worker = start_worker(WEBHOOK_PUMP_SECONDS="1")
    wait_until(lambda: receiver.in_flight == 4, timeout=30, what="the sends in flight")
    wait_until(lambda: Delivery.objects.filter(status="delivering").count() == 4, timeout=5)
    time.sleep(1.5)  # at least one hand-over while all four are in flight
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0

    assert Delivery.objects.filter(status="succeeded").count() == 4
    assert len(receiver.requests) == 4
