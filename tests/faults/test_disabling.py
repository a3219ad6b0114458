"""Disabling stops sending, whichever way it happens (issue 13, item 7).

Deliveries a worker already held were still sent after their endpoint was disabled and ended
`pending` on a disabled endpoint; the sweep then kicked an empty pump every second forever.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import django_rq
import pytest
from django.forms.models import model_to_dict
from django.test import Client

from accounts.models import Merchant
from deliveries import emit
from deliveries.engine import disable_endpoint
from deliveries.jobs import sweep
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

Start = Callable[..., subprocess.Popen[bytes]]


def test_it_leaves_nothing_pending_when_an_endpoint_is_disabled_mid_send(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Start,
) -> None:
    endpoint = make_endpoint(receiver.url(), timeout_seconds=10, max_in_flight=3)
    receiver.default = Answer(500, b"down", delay=2)
    for n in range(3):
        emit(merchant, "receipts.update", {"n": n})
    start_worker()
    wait_until(lambda: receiver.in_flight == 3, timeout=30, what="three sends in flight")

    disable_endpoint(endpoint, Endpoint.DisabledReason.MERCHANT)
    wait_until(lambda: receiver.in_flight == 0, timeout=30)
    wait_until(lambda: not Delivery.objects.filter(status="delivering").exists(), timeout=10)

    statuses = set(Delivery.objects.filter(endpoint=endpoint).values_list("status", flat=True))
    assert statuses == {"cancelled"}  # not "pending" (retrying) on a disabled endpoint
    assert not Delivery.objects.due().exists()


def test_it_sends_nothing_more_after_a_410_disables_the_endpoint(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Start,
) -> None:
    endpoint = make_endpoint(receiver.url(), timeout_seconds=10, max_in_flight=1)
    receiver.default = Answer(410, b"gone", delay=0.5)
    for n in range(8):
        emit(merchant, "receipts.update", {"n": n})
    start_worker()
    wait_until(lambda: not Endpoint.objects.get(pk=endpoint.pk).is_enabled, timeout=30)
    wait_until(lambda: not Delivery.objects.filter(status="delivering").exists(), timeout=10)

    assert len(receiver.requests) == 1
    assert Delivery.objects.filter(endpoint=endpoint, status="cancelled").count() == 7


def test_it_disables_through_the_admin_change_form_like_everywhere_else(
    merchant: Merchant, staff_client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    emit(merchant, "receipts.update", {"n": 1})
    data: dict[str, Any] = {
        k: v for k, v in model_to_dict(endpoint).items() if v is not None and k != "id"
    }
    data["event_types"] = [t.pk for t in endpoint.event_types.all()]
    data["is_enabled"] = ""
    data.pop("is_enabled")

    answer = staff_client.post(f"/admin/endpoints/endpoint/{endpoint.pk}/change/", data)

    assert answer.status_code == 302, answer.content.decode()[:2000]
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled and endpoint.disabled_reason == "staff"
    assert Delivery.objects.get(endpoint=endpoint).status == "cancelled"


def test_it_kicks_no_pump_for_deliveries_of_a_disabled_endpoint(
    merchant: Merchant, redis_conn: Any, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    emit(merchant, "receipts.update", {"n": 1})
    # What an older version could leave behind: pending on a disabled endpoint.
    Endpoint.objects.filter(pk=endpoint.pk).update(is_enabled=False, disabled_reason="merchant")
    redis_conn.flushdb()

    sweep()

    assert django_rq.get_queue("default").count == 0
    assert not Delivery.objects.due().exists()
