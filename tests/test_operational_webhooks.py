"""Operational webhooks: the platform operator (and merchants who subscribe) learn what happens
to merchants' webhooks, as signed deliveries through the same engine and workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from standardwebhooks.webhooks import Webhook

from accounts.models import ApiKey, Merchant
from catalogue.models import EventType
from deliveries import emit
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def add_operator_webhook(operator: Client, url: str, events: list[str] | None = None) -> Any:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    return operator.post("/api/v1/operator-webhooks", body, content_type="application/json")


def received(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.requests if r.path == path]


def types_at(receiver: Receiver, path: str) -> list[str]:
    return [body["type"] for body in received(receiver, path)]


def test_it_adds_operator_webhooks_showing_the_secret_once(
    operator: Client, merchant: Merchant
) -> None:
    created = add_operator_webhook(operator, "http://127.0.0.1:9/ops", ["endpoint.disabled"])
    assert created.status_code == 201, created.content
    webhook = created.json()["webhook"]
    assert webhook["secret"].startswith("whsec_")
    assert [e["name"] for e in webhook["events"]] == ["endpoint.disabled"]
    listed = operator.get("/api/v1/operator-webhooks").json()["webhooks"]
    assert [w["id"] for w in listed] == [webhook["id"]]
    assert listed[0]["secret"] != webhook["secret"]  # masked from now on
    stored = Endpoint.objects.get(public_id=webhook["id"])
    assert stored.merchant.is_platform and stored.merchant != merchant
    # The operator's own row is no merchant of the platform's.
    assert stored.merchant.public_id not in str(operator.get("/api/v1/merchants").json())
    assert operator.get(f"/api/v1/operator-webhooks/{webhook['id']}").status_code == 200
    assert operator.delete(f"/api/v1/operator-webhooks/{webhook['id']}").status_code == 204
    assert not Endpoint.objects.filter(public_id=webhook["id"]).exists()


def test_it_refuses_bad_operator_webhooks_and_adds_nothing(
    operator: Client, merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    cases = [
        ({"events": []}, "url"),
        ({"url": "ftp://127.0.0.1/x"}, "url"),
        ({"url": "http://127.0.0.1:9/ops", "events": ["receipts.update"]}, "events"),
        ({"url": "http://127.0.0.1:9/ops", "events": ["endpoint.nope"]}, "events"),
    ]
    for body, field in cases:
        response = operator.post("/api/v1/operator-webhooks", body, content_type="application/json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.json()["error"]["fields"]
    key = ApiKey.issue(merchant, "k")[1]
    merchant_key = Client(headers={"authorization": f"Bearer {key}"})
    refused = add_operator_webhook(merchant_key, "http://127.0.0.1:9/ops")
    assert refused.status_code == 403
    mine = make_endpoint("http://127.0.0.1:9/mine")
    # A merchant's webhook is not the operator's: 404, and nothing deleted.
    assert operator.delete(f"/api/v1/operator-webhooks/{mine.public_id}").status_code == 404
    assert list(Endpoint.objects.all()) == [mine]
    # A POS system cannot forge an operational event.
    forged = merchant_key.post(
        "/api/v1/events", {"type": "endpoint.disabled", "data": {}}, content_type="application/json"
    )
    assert forged.status_code == 400 and "type" in forged.json()["error"]["fields"]
    assert not Event.objects.exists()


def test_it_tells_the_operator_of_created_disabled_and_deleted_webhooks_signed(
    operator: Client,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    secret = add_operator_webhook(operator, receiver.url("/ops")).json()["webhook"]["secret"]
    receiver.routes["/gone"] = Answer(410, b"gone")
    gone = make_endpoint(receiver.url("/gone"))
    emit(merchant, "receipts.update", {"n": 1})
    work(until=lambda: "endpoint.disabled" in types_at(receiver, "/ops"))
    key = ApiKey.issue(merchant, "k")[1]
    Client(headers={"authorization": f"Bearer {key}"}).delete(f"/api/v1/webhooks/{gone.public_id}")
    work(until=lambda: "endpoint.deleted" in types_at(receiver, "/ops"))

    # The 410 also ended its delivery for good: delivery.exhausted.
    assert sorted(types_at(receiver, "/ops")) == [
        "delivery.exhausted",
        "endpoint.created",
        "endpoint.deleted",
        "endpoint.disabled",
    ]
    verifier = Webhook(secret)
    for request in (r for r in receiver.requests if r.path == "/ops"):
        verifier.verify(request.body, request.headers)  # raises on a bad signature
    disabled = next(b for b in received(receiver, "/ops") if b["type"] == "endpoint.disabled")
    # The envelope is the operator's own event; the merchant it is about is in its data.
    assert disabled["merchant_id"] == Merchant.objects.platform().public_id
    assert disabled["data"]["merchant_id"] == merchant.public_id
    assert disabled["data"]["endpoint_id"] == gone.public_id
    assert disabled["data"]["reason"] == "410"
    assert disabled["data"]["link"].endswith(f"/webhooks/{gone.public_id}/")
    # Stored as the operator's own events.
    platform = Merchant.objects.platform()
    assert Event.objects.filter(merchant=platform).count() == 4


def test_it_tells_of_paused_recovered_failing_and_exhausted_deliveries(
    operator: Client,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
    settings: Any,
) -> None:
    settings.WEBHOOK_BREAKER_THRESHOLD = 1
    settings.WEBHOOK_BREAKER_PAUSE_SECONDS = 1
    settings.WEBHOOK_RETRY_BASE_SECONDS = 1
    settings.WEBHOOK_RETRY_JITTER = 0
    add_operator_webhook(operator, receiver.url("/ops"))
    # Silent (a timeout opens the breaker), then answering: it closes again.
    receiver.routes["/slow"] = Answer(200, delay=2.5)
    make_endpoint(receiver.url("/slow"), timeout_seconds=1)
    # 404 is never retried: the delivery fails for good at once.
    receiver.routes["/missing"] = Answer(404, b"no")
    missing = make_endpoint(receiver.url("/missing"), ("customers.update",))
    emit(merchant, "receipts.update", {"n": 1})
    emit(merchant, "customers.update", {"n": 2})
    work(until=lambda: "endpoint.paused" in types_at(receiver, "/ops"), timeout=40)
    receiver.routes["/slow"] = Answer(200)
    work(
        until=lambda: (
            {"endpoint.recovered", "delivery.exhausted"} <= set(types_at(receiver, "/ops"))
        ),
        timeout=40,
    )
    bodies = {b["type"]: b["data"] for b in received(receiver, "/ops")}
    assert bodies["endpoint.paused"]["probe_at"].endswith("Z")
    exhausted = bodies["delivery.exhausted"]
    assert exhausted["endpoint_id"] == missing.public_id
    assert exhausted["event_type"] == "customers.update"
    assert exhausted["last_status_code"] == 404

    # Warned from 3 s, disabled from 6 s: with a retry every second, attempts land in both.
    settings.WEBHOOK_AUTO_DISABLE_SECONDS = 6
    receiver.routes["/down"] = Answer(503, b"down")
    down = make_endpoint(
        receiver.url("/down"),
        ("products.update",),
        retry_policy="fixed",
        fixed_retries=30,
        fixed_cooldown_seconds=1,
    )
    emit(merchant, "products.update", {})
    work(
        until=lambda: (
            not Endpoint.objects.get(pk=down.pk).is_enabled
            and "endpoint.disabled" in types_at(receiver, "/ops")
        ),
        timeout=40,
    )
    about_down = [
        b for b in received(receiver, "/ops") if b["data"]["endpoint_id"] == down.public_id
    ]
    kinds = [b["type"] for b in about_down]
    assert "endpoint.failing" in kinds and "endpoint.disabled" in kinds
    assert kinds.index("endpoint.failing") < kinds.index("endpoint.disabled")
    disabled = next(b for b in about_down if b["type"] == "endpoint.disabled")
    assert disabled["data"]["reason"] == "failing"


def test_it_never_announces_the_operators_own_failures(
    operator: Client,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    receiver.routes["/ops"] = Answer(404, b"no")  # the operator's receiver fails for good
    receiver.routes["/ops-gone"] = Answer(410, b"gone")
    add_operator_webhook(operator, receiver.url("/ops"))
    add_operator_webhook(operator, receiver.url("/ops-gone"))
    make_endpoint(receiver.url("/shop"))
    platform = Merchant.objects.platform()
    work(until=lambda: not Delivery.objects.filter(status__in=["pending", "delivering"]).exists())
    # One endpoint.created per operator webhook, no more: their failures announced nothing.
    assert Event.objects.filter(merchant=platform).count() == 1
    assert Delivery.objects.filter(merchant=platform).count() == 2
    assert sorted(types_at(receiver, "/ops") + types_at(receiver, "/ops-gone")) == [
        "endpoint.created",
        "endpoint.created",
    ]


def test_it_lets_a_merchant_subscribe_to_its_own_webhooks_events(
    merchant: Merchant,
    outsider_merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    make_endpoint(receiver.url("/watch"), ("endpoint.disabled", "delivery.exhausted"))
    every = make_endpoint(receiver.url("/every"), ())  # "all events": no operational ones
    make_endpoint(receiver.url("/outsider"), ("endpoint.disabled",), merchant=outsider_merchant)
    receiver.routes["/watch"] = Answer(404, b"no")  # the watcher itself fails for good
    other = make_endpoint(receiver.url("/other"))
    key = ApiKey.issue(merchant, "k")[1]
    Client(headers={"authorization": f"Bearer {key}"}).patch(
        f"/api/v1/webhooks/{other.public_id}", {"is_active": False}, content_type="application/json"
    )
    work(until=lambda: not Delivery.objects.filter(status__in=["pending", "delivering"]).exists())
    assert types_at(receiver, "/watch") == ["endpoint.disabled"]
    body = received(receiver, "/watch")[0]
    assert body["data"]["endpoint_id"] == other.public_id
    assert body["data"]["reason"] == "merchant"
    # The watcher's failed delivery of an operational event announced nothing more (no loop),
    # and neither the all-events webhook nor another merchant heard of it.
    assert types_at(receiver, "/every") == []
    assert types_at(receiver, "/outsider") == []
    assert Event.objects.filter(merchant=merchant).count() == 1
    assert every.is_enabled
    assert EventType.objects.filter(category__slug="platform").count() == 7


def test_it_adds_operator_webhooks_in_the_admin_with_the_secret_shown_once(
    staff_client: Client,
) -> None:
    platform_types = EventType.objects.filter(category__slug="platform")
    added = staff_client.post(
        "/admin/endpoints/operatorwebhook/add/",
        {
            "url": "http://127.0.0.1:9/ops",
            "description": "Back office",
            "event_types": [platform_types.get(name="endpoint.disabled").pk],
        },
        follow=True,
    )
    assert added.status_code == 200
    webhook = Endpoint.objects.get()
    assert webhook.merchant.is_platform
    assert webhook.secret in added.content.decode()
    assert [t.name for t in webhook.event_types.all()] == ["endpoint.disabled"]
    page = staff_client.get(f"/admin/endpoints/operatorwebhook/{webhook.pk}/change/")
    assert webhook.secret not in page.content.decode()
    # Only operational types are offered.
    assert "receipts.update" not in page.content.decode()
    refused = staff_client.post(
        "/admin/endpoints/operatorwebhook/add/", {"url": "ftp://nope"}, follow=True
    )
    assert refused.status_code == 200 and Endpoint.objects.count() == 1
