"""/api/v1/events and /api/v1/deliveries: the POS system's way in, and what it can inspect."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver


@pytest.fixture
def key(merchant: Merchant) -> str:
    return ApiKey.issue(merchant, "POS")[1]


@pytest.fixture
def api(key: str) -> Client:
    return Client(headers={"authorization": f"Bearer {key}"})


def post_json(api: Client, path: str, body: Any) -> Any:
    return api.post(path, json.dumps(body), content_type="application/json")


@pytest.mark.django_db(transaction=True)
def test_it_accepts_an_event_and_delivers_it(
    api: Client,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
) -> None:
    make_endpoint(receiver.url(), types=("pos.payment.completed",))
    response = post_json(
        api, "/api/v1/events", {"type": "pos.payment.completed", "data": {"amount": "12.50"}}
    )
    assert response.status_code == 202, response.content
    event = response.json()["event"]
    assert event["id"].startswith("evt_") and event["sequence"] == 1
    assert event["merchant_id"] == merchant.public_id
    work(until=lambda: Delivery.objects.filter(status="succeeded").exists())
    assert receiver.requests[0].json()["data"] == {"amount": "12.50"}

    detail = api.get(f"/api/v1/events/{event['id']}").json()["event"]
    [delivery] = detail["deliveries"]
    assert delivery["status"] == "succeeded" and delivery["last_status_code"] == 200
    with_attempts = api.get(f"/api/v1/deliveries/{delivery['id']}").json()["delivery"]
    assert with_attempts["attempts_log"][0]["response_status"] == 200


def test_it_accepts_form_encoded_events(api: Client) -> None:
    response = api.post(
        "/api/v1/events",
        "type=receipts.update&data=%7B%22total%22%3A%20%229.99%22%7D",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 202, response.content
    assert Event.objects.get().data == {"total": "9.99"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "nope.update", "data": {}}, "type"),
        ({"data": {}}, "type"),
        ({"type": "receipts.update", "webhook_url": "gopher://example.com/"}, "webhook_url"),
        ({"type": "receipts.update", "webhook_url": "http://169.254.169.254/"}, "webhook_url"),
    ],
)
def test_it_refuses_bad_events_and_stores_nothing(
    api: Client, merchant: Merchant, body: dict[str, Any], field: str
) -> None:
    response = post_json(api, "/api/v1/events", body)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Event.objects.exists()
    merchant.refresh_from_db()
    assert merchant.event_sequence == 0


def test_it_refuses_an_event_over_256_kib_with_413(api: Client) -> None:
    body = {"type": "receipts.update", "data": {"blob": "x" * (256 * 1024)}}
    response = post_json(api, "/api/v1/events", body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not Event.objects.exists()
    just_under = {"type": "receipts.update", "data": {"blob": "x" * (250 * 1024)}}
    assert post_json(api, "/api/v1/events", just_under).status_code == 202


def test_it_pages_events_newest_first_and_feeds_them_after_a_cursor(
    api: Client, merchant: Merchant
) -> None:
    for n in range(5):
        Event.objects.create_event(merchant, "receipts.update", {"n": n})
    Event.objects.create_event(merchant, "products.update", {"n": 99})
    newest = api.get("/api/v1/events?limit=2").json()
    assert [e["sequence"] for e in newest["events"]] == [6, 5] and newest["has_more"]
    older = api.get(f"/api/v1/events?limit=2&before={newest['next_cursor']}").json()
    assert [e["sequence"] for e in older["events"]] == [4, 3]
    receipts = api.get("/api/v1/events?type=receipts.update").json()["events"]
    assert len(receipts) == 5
    feed = api.get("/api/v1/events?after=2&limit=3").json()
    assert [e["sequence"] for e in feed["events"]] == [3, 4, 5]
    rest = api.get(f"/api/v1/events?after={feed['next_cursor']}").json()
    assert [e["sequence"] for e in rest["events"]] == [6] and not rest["has_more"]
    caught_up = api.get(f"/api/v1/events?after={rest['next_cursor']}").json()
    assert caught_up["events"] == [] and caught_up["next_cursor"] == rest["next_cursor"]


def test_it_filters_and_retries_deliveries(api: Client, merchant: Merchant) -> None:
    a = Endpoint.objects.create(merchant=merchant, url="https://example.com/a")
    b = Endpoint.objects.create(merchant=merchant, url="https://example.com/b")
    event = Event.objects.create_event(merchant, "receipts.update", {})
    failed = Delivery.objects.create(merchant=merchant, event=event, endpoint=a, status="failed")
    Delivery.objects.create(merchant=merchant, event=event, endpoint=b, status="succeeded")
    only_failed = api.get("/api/v1/deliveries?status=failed").json()["deliveries"]
    assert [d["id"] for d in only_failed] == [failed.public_id]
    to_b = api.get(f"/api/v1/deliveries?webhook={b.public_id}").json()["deliveries"]
    assert [d["webhook_id"] for d in to_b] == [b.public_id]
    assert api.get("/api/v1/deliveries?status=lost").status_code == 400

    retried = api.post(f"/api/v1/deliveries/{failed.public_id}/retry")
    assert retried.status_code == 202
    assert retried.json()["delivery"]["status"] == "pending"
    again = api.post(f"/api/v1/deliveries/{failed.public_id}/retry")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_retryable"


def test_it_pages_deliveries_by_cursor(api: Client, merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="https://example.com/a")
    event = Event.objects.create_event(merchant, "receipts.update", {})
    for _ in range(5):
        Delivery.objects.create(merchant=merchant, event=event, endpoint=endpoint)
    first = api.get("/api/v1/deliveries?limit=3").json()
    second = api.get(f"/api/v1/deliveries?limit=3&before={first['next_cursor']}").json()
    ids = [d["id"] for d in first["deliveries"] + second["deliveries"]]
    assert len(set(ids)) == 5 and not second["has_more"]


def test_it_rate_limits_a_key_with_retry_after(
    api: Client, settings: Any, redis_conn: Any, merchant: Merchant
) -> None:
    settings.API_RATE_LIMIT = (3, 60)
    codes = [api.get("/api/v1/event-types").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = api.get("/api/v1/event-types")
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60
    # Another merchant's key has its own budget.
    other = ApiKey.issue(Merchant.objects.create(name="Other"), "k")[1]
    client = Client(headers={"authorization": f"Bearer {other}"})
    assert client.get("/api/v1/event-types").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_it_sends_a_test_through_the_api(
    api: Client, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(receiver.url())
    receiver.default = Answer(418, b"I'm a teapot")
    body = api.post(f"/api/v1/webhooks/{endpoint.public_id}/test").json()["test"]
    assert (body["status"], body["succeeded"]) == (418, False)
    assert body["response_body"] == "I'm a teapot"
    assert receiver.requests[0].json()["type"] == "webhook.test"


def test_it_serves_its_openapi_schema_and_docs(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/webhooks",
        "/api/v1/webhooks/{public_id}",
        "/api/v1/events",
        "/api/v1/deliveries/{public_id}/retry",
        "/api/v1/event-types",
    ):
        assert path in paths, path
    assert client.get("/api/docs/").status_code == 200
