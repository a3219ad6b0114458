"""Redis stopped, restarted and flushed: the database owns the state, so nothing is lost."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import ApiKey, Merchant
from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.faults.conftest import FastReceiver, wait_until
from webhooks_project import embedded_redis

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_control() -> Any:
    directory = settings.TEST_REDIS_DIR
    yield directory
    embedded_redis.ensure_running(directory)  # whatever the test did, leave Redis up


def succeeded() -> int:
    return Delivery.objects.filter(status="succeeded").count()


def test_it_delivers_everything_after_redis_restarts_and_is_flushed(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    fast_receiver: FastReceiver,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    redis_control: Any,
) -> None:
    make_endpoint(fast_receiver.url("/ok/a"))
    start_worker()
    for n in range(20):
        emit(merchant, "receipts.update", {"n": n})
    wait_until(lambda: succeeded() == 20, 60, "first 20 delivered")

    embedded_redis.stop(redis_control)
    for n in range(20, 50):  # accepted while Redis is down: stored in the database
        emit(merchant, "receipts.update", {"n": n})
    # The worker's pump claims from the database, so it may already be sending some of them.
    assert Delivery.objects.count() == 50
    embedded_redis.ensure_running(redis_control)
    redis_conn = embedded_redis.url_for(redis_control)
    subprocess.run(["redis-cli", "-s", redis_conn[len("unix://") :], "FLUSHALL"], check=False)

    wait_until(lambda: succeeded() == 50, 90, "all 50 delivered after the outage")
    stats = fast_receiver.stats()
    assert (stats["unique"], stats["duplicates"]) == (50, 0)


def test_it_accepts_events_through_the_api_while_redis_is_down(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    fast_receiver: FastReceiver,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    redis_control: Any,
) -> None:
    make_endpoint(fast_receiver.url("/ok/b"))
    key = ApiKey.issue(merchant, "POS")[1]
    api = Client(headers={"authorization": f"Bearer {key}"})
    embedded_redis.stop(redis_control)
    responses = [
        api.post(
            "/api/v1/events",
            json.dumps({"type": "receipts.update", "data": {"n": n}}),
            content_type="application/json",
        )
        for n in range(10)
    ]
    assert [r.status_code for r in responses] == [202] * 10
    assert Delivery.objects.filter(status="pending").count() == 10

    embedded_redis.ensure_running(redis_control)
    start_worker()
    wait_until(lambda: succeeded() == 10, 90, "events accepted during the outage delivered")
    assert fast_receiver.stats()["unique"] == 10
