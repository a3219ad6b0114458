"""POST /api/v1/events/batch and emit_many(): many events, one transaction, all or none."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

import deliveries
from accounts.models import ApiKey, Merchant
from deliveries.engine import queueing
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from tests.conftest import Receiver

BATCH = "/api/v1/events/batch"


@pytest.fixture
def api(merchant: Merchant) -> Client:
    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})


def post_batch(api: Client, events: Any) -> Any:
    return api.post(BATCH, json.dumps({"events": events}), content_type="application/json")


@pytest.mark.django_db(transaction=True)
def test_it_stores_a_batch_in_request_order_and_delivers_it(
    api: Client,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
) -> None:
    make_endpoint(receiver.url("/receipts"), types=("receipts.update",))
    make_endpoint(receiver.url("/both"), types=("receipts.update", "products.update"))
    events = [
        {"type": "receipts.update", "data": {"n": 0}},
        {"type": "products.update", "data": {"n": 1}},
        {"type": "receipts.update", "data": {"n": 2}, "webhook_url": receiver.url("/once")},
    ]

    response = post_batch(api, events)

    assert response.status_code == 202, response.content
    refs = response.json()["events"]
    assert [r["sequence"] for r in refs] == [1, 2, 3]
    assert not any(r["replayed"] for r in refs)
    stored = [Event.objects.get(public_id=r["id"]) for r in refs]
    assert [e.data for e in stored] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [e.type for e in stored] == ["receipts.update", "products.update", "receipts.update"]
    assert [e.deliveries.count() for e in stored] == [2, 1, 3]
    work(until=lambda: Delivery.objects.filter(status="succeeded").count() == 6)
    by_path = sorted((r.path, r.json()["data"]["n"]) for r in receiver.requests)
    assert by_path == [
        ("/both", 0),
        ("/both", 1),
        ("/both", 2),
        ("/once", 2),
        ("/receipts", 0),
        ("/receipts", 2),
    ]


def test_it_kicks_the_pump_once_per_batch(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_endpoint("https://example.com/hook")
    with django_capture_on_commit_callbacks() as callbacks:
        events = deliveries.emit_many(
            merchant, [{"type": "receipts.update", "data": {"n": n}} for n in range(50)]
        )
    assert len(events) == 50 and Delivery.objects.count() == 50
    kicks = [c for c in callbacks if getattr(c, "func", c) is queueing.kick]
    assert len(kicks) == 1  # one kick after commit, naming the endpoint that got work
    assert kicks[0].keywords["fresh"] == {Endpoint.objects.get().pk}


def test_it_reads_subscribers_once_per_event_type_not_per_event(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    for n in range(10):
        make_endpoint(f"https://example.com/{n}", types=("receipts.update", "products.update"))
    types = ["receipts.update", "products.update"]
    deliveries.emit_many(merchant, [{"type": t} for t in types])  # warm the type cache

    def queries_for(count: int) -> int:
        items = [{"type": types[n % 2], "data": {"n": n}} for n in range(count)]
        with CaptureQueriesContext(connection) as queries:
            deliveries.emit_many(merchant, items)
        return len(queries)

    # Everything, the subscriber reads and the deliveries' one executemany included, is the
    # same for 4 events as for 100.
    assert queries_for(100) == queries_for(4)
    assert Delivery.objects.count() == 10 * (2 + 4 + 100)
    assert list(Event.objects.order_by("sequence").values_list("sequence", flat=True)) == list(
        range(1, 2 + 4 + 100 + 1)
    )


def test_it_stores_nothing_when_one_item_is_bad_and_names_each_one(
    api: Client, merchant: Merchant
) -> None:
    events = [
        {"type": "receipts.update", "data": {}},
        {"type": "nope.update", "data": {}},
        {"type": "receipts.update"},
        {"type": "receipts.update", "webhook_url": "gopher://example.com/"},
        {"data": {}},
    ]

    response = post_batch(api, events)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("events[1].type: Unknown event type 'nope.update'")
    assert set(error["fields"]["events"]) == {"1", "3", "4"}
    assert set(error["fields"]["events"]["1"]) == {"type"}
    assert set(error["fields"]["events"]["3"]) == {"webhook_url"}
    assert set(error["fields"]["events"]["4"]) == {"type"}
    assert not Event.objects.exists() and not Delivery.objects.exists()
    merchant.refresh_from_db()
    assert merchant.event_sequence == 0


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"events": []}, {"events": "A list of 1 to 100 events is required."}),
        (
            {"events": {"type": "receipts.update"}},
            {"events": "A list of 1 to 100 events is required."},
        ),
        (
            {"events": [{"type": "receipts.update"}] * 101},
            {"events": "A list of 1 to 100 events is required."},
        ),
        ([{"type": "receipts.update"}], {"events": "A list of 1 to 100 events is required."}),
        (
            {"events": [{"type": "receipts.update"}, "receipts.update"]},
            {"events": {"1": {"non_field_errors": "Each event must be a JSON object."}}},
        ),
        (
            {
                "events": [
                    {"type": "receipts.update", "idempotency_key": "a"},
                    {"type": "receipts.update", "idempotency_key": "b"},
                    {"type": "receipts.update", "idempotency_key": "a"},
                ]
            },
            {"events": {"2": {"idempotency_key": "Repeats the key of item 0."}}},
        ),
    ],
)
def test_it_refuses_malformed_batches(
    api: Client, merchant: Merchant, body: Any, fields: dict[str, Any]
) -> None:
    response = api.post(BATCH, json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"] == fields
    assert not Event.objects.exists()


def test_it_takes_100_events_and_refuses_a_batch_over_1_mib_with_413(api: Client) -> None:
    blob = "x" * (10 * 1024 - 100)
    full = [{"type": "receipts.update", "data": {"blob": blob, "n": n}} for n in range(100)]
    response = post_batch(api, full)
    assert response.status_code == 202, response.content[:300]
    assert Event.objects.count() == 100

    too_big = [{"type": "receipts.update", "data": {"blob": "x" * (200 * 1024)}}] * 6
    response = post_batch(api, too_big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert Event.objects.count() == 100


def test_it_refuses_one_event_over_256_kib_inside_a_batch(api: Client) -> None:
    events = [
        {"type": "receipts.update", "data": {"n": 0}},
        {"type": "receipts.update", "data": {"blob": "x" * (257 * 1024)}},
    ]
    response = post_batch(api, events)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "events": {"1": {"data": "The event is larger than 256 KiB."}}
    }
    assert not Event.objects.exists()


def test_it_refuses_form_encoded_batches(api: Client) -> None:
    response = api.post(BATCH, "events=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error"]["code"]
    assert not Event.objects.exists()


def test_it_keeps_batches_to_the_callers_merchant(
    api: Client,
    merchant: Merchant,
    outsider_merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
) -> None:
    make_endpoint("https://example.com/theirs", merchant=outsider_merchant)
    response = post_batch(api, [{"type": "receipts.update"}])
    assert response.status_code == 202
    assert Event.objects.get().merchant == merchant
    assert not Delivery.objects.exists()
