"""Past events for a new webhook: `POST /api/v1/webhooks/{id}/replay`, end to end with a real
worker and a real receiver on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, Merchant
from deliveries import emit
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(merchant: Merchant) -> Client:
    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})


def replay(api: Client, endpoint: Endpoint, **body: Any) -> Any:
    return api.post(
        f"/api/v1/webhooks/{endpoint.public_id}/replay", body, content_type="application/json"
    )


def test_it_sends_past_events_in_event_order_and_never_twice(
    api: Client,
    merchant: Merchant,
    outsider_merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    past = [emit(merchant, "receipts.update", {"n": n}) for n in range(5)]
    emit(merchant, "customers.update", {"not": "subscribed"})
    emit(outsider_merchant, "receipts.update", {"other": "merchant"})
    Event.objects.create_event(merchant, "webhook.test", {"a": "test"})
    # Older than the retry window: its delivery must still get a whole window of its own.
    Event.objects.filter(pk=past[0].pk).update(created_at=timezone.now() - timedelta(days=3))
    started = timezone.now()
    endpoint = make_endpoint(receiver.url(), ("receipts.update",), max_in_flight=1)
    live = emit(merchant, "receipts.update", {"n": "live"})  # already has its delivery

    counted = replay(api, endpoint, since="7d", dry_run=True)
    assert counted.status_code == 200 and counted.json() == {"count": 5, "dry_run": True}
    assert Delivery.objects.filter(endpoint=endpoint).count() == 1  # the dry run made none

    sent = replay(api, endpoint, since="7d")
    assert sent.status_code == 202 and sent.json() == {"count": 5, "dry_run": False}
    again = replay(api, endpoint, since="7d")
    assert again.status_code == 202 and again.json()["count"] == 0

    work(until=lambda: len(receiver.requests) >= 6)
    bodies = [r.json() for r in receiver.requests]
    replayed = [b["sequence"] for b in bodies if b["id"] != live.public_id]
    assert replayed == [e.sequence for e in past]
    assert sorted(b["id"] for b in bodies) == sorted([*(e.public_id for e in past), live.public_id])
    deliveries = Delivery.objects.filter(endpoint=endpoint, event__in=past)
    assert {d.status for d in deliveries} == {"succeeded"}
    assert all(d.created_at >= started for d in deliveries)


def test_it_replays_only_the_types_asked_for(
    api: Client, merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    emit(merchant, "receipts.update", {})
    emit(merchant, "customers.update", {})
    # An operational event stored for the merchant: not for "all events" webhooks.
    Event.objects.create_event(merchant, "endpoint.disabled", {"reason": "merchant"})
    endpoint = make_endpoint("http://127.0.0.1:9/all", ())  # no types: every type
    only = replay(api, endpoint, since="24h", event_types=["customers.update"], dry_run=True)
    assert only.json()["count"] == 1
    assert replay(api, endpoint, since="24h", dry_run=True).json()["count"] == 2


def test_it_refuses_bad_replays_and_sends_nothing(
    api: Client,
    merchant: Merchant,
    outsider_merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    settings: Any,
) -> None:
    settings.RETENTION_DAYS = 30
    emit(merchant, "receipts.update", {})
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    cases = [
        ({}, "since"),
        ({"since": "yesterday-ish"}, "since"),
        ({"since": "40d"}, "since"),
        ({"since": "24h", "event_types": ["nope.update"]}, "event_types"),
        ({"since": "24h", "event_types": "receipts.update"}, "event_types"),
    ]
    for body, field in cases:
        response = replay(api, endpoint, **body)
        assert response.status_code == 400, (body, response.content)
        assert field in response.json()["error"]["fields"], response.json()
    endpoint.is_enabled = False
    endpoint.save()
    disabled = replay(api, endpoint, since="24h")
    assert disabled.status_code == 409
    other = make_endpoint("http://127.0.0.1:9/other", merchant=outsider_merchant)
    assert replay(api, other, since="24h").status_code == 404
    assert not Delivery.objects.exists()


def test_it_lets_other_merchants_through_while_a_replay_drains(
    merchant: Merchant,
    outsider_merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    from deliveries.engine import replay as replay_events

    for n in range(60):
        emit(merchant, "receipts.update", {"n": n})
    receiver.routes["/slow"] = Answer(delay=0.05)
    slow = make_endpoint(receiver.url("/slow"), max_in_flight=1)
    assert replay_events(slow, timezone.now() - timedelta(hours=1)) == 60
    make_endpoint(receiver.url("/other"), merchant=outsider_merchant)
    emit(outsider_merchant, "receipts.update", {"live": True})
    work(until=lambda: len(receiver.requests) >= 61, timeout=60)
    paths = [r.path for r in receiver.requests]
    # The other merchant's event did not wait behind the replay's backlog.
    assert paths.index("/other") < len(paths) - 1 - paths[::-1].index("/slow") - 30


def _flashes(client: Client, response: Any) -> list[str]:
    while response.status_code in (301, 302):
        response = client.get(response["Location"])
    return re.findall(
        r'<div class="message [^"]+" role="\w+">(.*?)</div>', response.content.decode()
    )


def test_it_offers_past_events_on_the_dashboard_with_the_count_first(
    merchant: Merchant,
    owner: Any,
    outsider: Any,
    make_endpoint: Callable[..., Endpoint],
) -> None:
    for n in range(3):
        emit(merchant, "receipts.update", {"n": n})
    old = emit(merchant, "receipts.update", {"old": True})
    Event.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    client = Client()
    client.force_login(owner)
    detail = client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert f"/webhooks/{endpoint.public_id}/past-events/" in detail

    page = client.get(f"/webhooks/{endpoint.public_id}/past-events/").content.decode()
    assert "3 past events</strong> will be sent" in page
    week = client.get(f"/webhooks/{endpoint.public_id}/past-events/?days=7").content.decode()
    assert "4 past events</strong> will be sent" in week
    assert not Delivery.objects.exists()  # counting sent nothing

    sent = client.post(f"/webhooks/{endpoint.public_id}/past-events/send/", {"days": "7"})
    assert _flashes(client, sent)[0].startswith("Sending 4 past events")
    assert Delivery.objects.filter(endpoint=endpoint).count() == 4
    again = client.post(f"/webhooks/{endpoint.public_id}/past-events/send/", {"days": "7"})
    assert "nothing to send" in _flashes(client, again)[0]
    assert Delivery.objects.filter(endpoint=endpoint).count() == 4

    bad = client.post(f"/webhooks/{endpoint.public_id}/past-events/send/", {"days": "365"})
    assert "nothing was sent" in _flashes(client, bad)[0]
    assert Delivery.objects.count() == 4

    other = Client()
    other.force_login(outsider)
    assert other.get(f"/webhooks/{endpoint.public_id}/past-events/").status_code == 404
    refused = other.post(f"/webhooks/{endpoint.public_id}/past-events/send/", {"days": "7"})
    assert refused.status_code == 404
    assert Client().post(f"/webhooks/{endpoint.public_id}/past-events/send/").status_code == 302
    assert Delivery.objects.count() == 4
