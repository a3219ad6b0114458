"""Filters on the payload: only events whose data match a webhook's filter are delivered to it.

End to end with real workers and a real receiver that records which events arrive where, on
every path that creates deliveries; then the API, the dashboard form and the admin.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import Merchant, User
from deliveries import emit, emit_many
from deliveries.engine import send_test
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

MAIN_ONLY = {"outlet": "Main"}
BIG_SALES = {"total": {"$gte": 100000}}


def all_done() -> bool:
    return not Delivery.objects.filter(status__in=["pending", "delivering"]).exists()


def arrived(receiver: Receiver) -> dict[str, list[str]]:
    """Per receiver path, the `data.receipt_no` of each event that reached it, sorted."""
    got: dict[str, list[str]] = {}
    for request in receiver.requests:
        got.setdefault(request.path, []).append(request.json()["data"]["receipt_no"])
    return {path: sorted(numbers) for path, numbers in got.items()}


def test_it_delivers_only_the_events_that_match_each_filter(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    make_endpoint(receiver.url("/big"), filter=BIG_SALES)
    make_endpoint(receiver.url("/all"))

    emit(merchant, "receipts.update", {"receipt_no": "R-1", "outlet": "Main", "total": 5})
    emit(merchant, "receipts.update", {"receipt_no": "R-2", "outlet": "Airport", "total": 200000})
    emit(merchant, "receipts.update", {"receipt_no": "R-3", "outlet": "Mall", "total": 10})
    work(until=all_done)

    assert arrived(receiver) == {
        "/main": ["R-1"],
        "/big": ["R-2"],
        "/all": ["R-1", "R-2", "R-3"],
    }
    # Filtered-out events made no delivery at all: nothing pending, failed or cancelled.
    assert Delivery.objects.count() == 5
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_it_filters_every_event_of_a_batch(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(
        receiver.url("/vip"),
        types=("receipts.update", "customers.update"),
        filter={"customer.tags": "vip", "items.$.sku": {"$regex": "^GIFT-"}},
    )
    emit_many(
        merchant,
        [
            {
                "type": "receipts.update",
                "data": {
                    "receipt_no": "B-1",
                    "customer": {"tags": ["vip"]},
                    "items": [{"sku": "A-1"}, {"sku": "GIFT-9"}],
                },
            },
            {
                "type": "receipts.update",
                "data": {"receipt_no": "B-2", "customer": {"tags": ["new"]}, "items": []},
            },
            {
                "type": "customers.update",
                "data": {
                    "receipt_no": "B-3",
                    "customer": {"tags": ["vip"]},
                    "items": [{"sku": "A-2"}],
                },
            },
        ],
    )
    work(until=all_done)
    assert arrived(receiver) == {"/vip": ["B-1"]}
    assert Delivery.objects.count() == 1


def test_it_filters_an_api_batch(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
    api: Client,
) -> None:
    make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    response = api.post(
        "/api/v1/events/batch",
        {
            "events": [
                {"type": "receipts.update", "data": {"receipt_no": "A-1", "outlet": "Main"}},
                {"type": "receipts.update", "data": {"receipt_no": "A-2", "outlet": "Mall"}},
            ]
        },
        content_type="application/json",
    )
    assert response.status_code in (200, 201, 202), response.content
    work(until=all_done)
    assert arrived(receiver) == {"/main": ["A-1"]}


def test_it_still_sends_a_one_off_url_when_the_webhook_filters_the_event_out(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    emit(
        merchant,
        "receipts.update",
        {"receipt_no": "O-1", "outlet": "Mall"},
        webhook_url=receiver.url("/one-off"),
    )
    work(until=all_done)
    assert arrived(receiver) == {"/one-off": ["O-1"]}


def test_it_resends_to_new_subscribers_only_when_their_filter_matches(
    merchant: Merchant,
    owner: User,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
) -> None:
    event = emit(merchant, "receipts.update", {"receipt_no": "N-1", "outlet": "Mall"})
    make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    make_endpoint(receiver.url("/mall"), filter={"outlet": {"$in": ["Mall", "Airport"]}})
    client = Client()
    client.force_login(owner)

    confirm = client.get(f"/events/{event.public_id}/resend/confirm/").content.decode()
    assert "1 webhook" in confirm

    response = client.post(f"/events/{event.public_id}/resend/")
    assert response.status_code == 302
    work(until=all_done)
    assert arrived(receiver) == {"/mall": ["N-1"]}
    assert Delivery.objects.count() == 1


def test_it_sends_a_test_whatever_the_filter(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    delivery = send_test(endpoint)
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert [r.json()["type"] for r in receiver.requests] == ["webhook.test"]


def test_it_stops_filtering_once_the_filter_is_cleared(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    endpoint = make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    emit(merchant, "receipts.update", {"receipt_no": "C-1", "outlet": "Mall"})
    endpoint.filter = None
    endpoint.save()
    emit(merchant, "receipts.update", {"receipt_no": "C-2", "outlet": "Mall"})
    work(until=all_done)
    assert arrived(receiver) == {"/main": ["C-2"]}


def _json(response: Any) -> dict[str, Any]:
    return json.loads(response.content)
