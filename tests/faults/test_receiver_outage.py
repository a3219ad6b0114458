"""A receiver that is down (connection refused) for a while, then up again."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import Merchant
from deliveries import emit
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import Endpoint
from tests.conftest import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_delivers_on_the_retry_schedule_once_the_receiver_is_back(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
    settings: Any,
) -> None:
    settings.WEBHOOK_RETRY_BASE_SECONDS = 1
    settings.WEBHOOK_RETRY_JITTER = 0
    # The retry schedule itself; parking by the circuit breaker is tests/faults/test_isolation.py.
    settings.WEBHOOK_BREAKER_THRESHOLD = 100
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    make_endpoint(f"http://127.0.0.1:{port}/hook")
    for n in range(5):
        emit(merchant, "receipts.update", {"n": n})

    work(until=lambda: DeliveryAttempt.objects.filter(number=2).count() == 5, timeout=30)
    first = DeliveryAttempt.objects.filter(number=1).first()
    assert first is not None and first.error == "connection refused"
    assert first.response_status is None
    assert Delivery.objects.filter(status="pending").count() == 5  # still retrying

    receiver = Receiver(port=port)
    try:
        work(until=lambda: Delivery.objects.filter(status="succeeded").count() == 5, timeout=30)
    finally:
        receiver.stop()
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 5
    assert all(d.attempts >= 3 for d in Delivery.objects.all())
