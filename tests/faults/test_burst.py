"""A burst of 10,000 events to 3 endpoints, 2 workers: 30,000 deliveries, none lost or doubled."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Merchant
from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.faults.conftest import FastReceiver, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = int(os.environ.get("BURST_EVENTS", "10000"))
ENDPOINTS = 3


def test_it_delivers_a_burst_exactly_once(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    fast_receiver: FastReceiver,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    for n in range(ENDPOINTS):
        make_endpoint(
            fast_receiver.url(f"/ok/{n}"), types=("inventory_levels.update",), log_mode="error"
        )
    start_worker()
    start_worker()
    started = time.monotonic()
    for n in range(EVENTS):
        emit(merchant, "inventory_levels.update", {"n": n, "in_stock": n % 17})
    emitted = time.monotonic() - started
    expected = EVENTS * ENDPOINTS
    wait_until(
        lambda: Delivery.objects.filter(status="succeeded").count() == expected,
        600,
        f"{expected} deliveries",
    )
    elapsed = time.monotonic() - started
    stats = fast_receiver.stats()
    report = {
        "events": EVENTS,
        "endpoints": ENDPOINTS,
        "workers": 2,
        "deliveries": expected,
        "received_unique": stats["unique"],
        "duplicates": stats["duplicates"],
        "lost": expected - stats["unique"],
        "emit_seconds": round(emitted, 1),
        "total_seconds": round(elapsed, 1),
        "database": connection.vendor,
    }
    (settings.VAR_DIR / f"reliability-{report['database']}.json").write_text(
        json.dumps(report, indent=2)
    )
    print("burst:", report)
    assert stats["unique"] == expected
    assert stats["duplicates"] == 0
    assert not Delivery.objects.exclude(status="succeeded").exists()
