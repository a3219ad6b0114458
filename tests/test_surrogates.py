"""Lone surrogates (U+D800 to U+DFFF alone): JSON may escape them ("Caf\\ud83d"), UTF-8 cannot
encode them. Event data with one is refused with a 400 before anything is stored; every page
that shows stored third-party text (caught requests, receivers' and loyalty apps' answers,
event data stored before the check) renders whatever it holds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from accounts.models import ApiKey, Merchant, User
from deliveries import emit, emit_many
from deliveries.models import Delivery, DeliveryAttempt, Event
from endpoints.models import Endpoint
from lib.event_data import InvalidEventData
from tests.conftest import Answer, Receiver
from tooling.models import Inspector, LoyaltyApp, LoyaltyCall

LONE = "Caf\ud83d"
# What a POS sends: valid JSON text, ASCII only, with the escape of a lone high surrogate.
LONE_JSON = '{"note": "Caf\\ud83d"}'


@pytest.fixture
def api(merchant: Merchant) -> Client:
    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})


@pytest.fixture
def dashboard(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.mark.parametrize(
    "data",
    [{"note": LONE}, {"Caf\udc00": 1}, [{"deep": ["x", "\udfff"]}], "\ud800"],
    ids=["value", "key", "nested", "string"],
)
def test_it_refuses_event_data_with_a_lone_surrogate_with_a_400(
    api: Client, merchant: Merchant, data: Any
) -> None:
    body = json.dumps({"type": "receipts.update", "data": data})
    response = api.post("/api/v1/events", body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert "surrogate" in error["fields"]["data"]
    assert not Event.objects.exists()


def test_it_refuses_a_batch_with_a_lone_surrogate_with_a_400(
    api: Client, merchant: Merchant
) -> None:
    events = [
        {"type": "receipts.update", "data": {"fine": "Café 😀"}},
        {"type": "receipts.update", "data": {"note": LONE}},
    ]
    response = api.post(
        "/api/v1/events/batch", json.dumps({"events": events}), content_type="application/json"
    )
    assert response.status_code == 400
    assert "surrogate" in response.json()["error"]["message"]
    assert not Event.objects.exists()


def test_it_accepts_a_surrogate_pair(api: Client) -> None:
    body = '{"type": "receipts.update", "data": {"note": "Caf\\ud83d\\ude00"}}'
    response = api.post("/api/v1/events", body, content_type="application/json")
    assert response.status_code == 202
    assert Event.objects.get().data == {"note": "Caf😀"}


def test_it_refuses_a_lone_surrogate_emitted_from_python(merchant: Merchant) -> None:
    with pytest.raises(InvalidEventData, match="surrogate"):
        emit(merchant, "receipts.update", {"note": LONE})
    with pytest.raises(InvalidEventData, match="surrogate"):
        emit_many(
            merchant,
            [
                {"type": "receipts.update", "data": {"fine": 1}},
                {"type": "receipts.update", "data": {"note": LONE}},
            ],
        )
    assert not Event.objects.exists()


@pytest.fixture
def stored(merchant: Merchant) -> Delivery:
    """An event stored before the check, with a delivery and an attempt that logged it."""
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL's jsonb never stored a lone surrogate")
    endpoint = Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/hook")
    event = emit(merchant, "receipts.update", {"note": "placeholder"})
    Event.objects.filter(pk=event.pk).update(data={"note": LONE, LONE: 1})
    delivery = Delivery.objects.create(merchant=merchant, event=event, endpoint=endpoint)
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=1,
        url=endpoint.url,
        request_body=json.dumps({"data": {"note": LONE}}),
        response_status=200,
        response_body=LONE_JSON,
    )
    return delivery


def test_it_shows_stored_event_data_with_a_lone_surrogate_in_the_api(
    api: Client, stored: Delivery
) -> None:
    event = stored.event
    for path in (
        "/api/v1/events",
        "/api/v1/events?after=0",
        f"/api/v1/events/{event.public_id}",
        f"/api/v1/deliveries/{stored.public_id}",
    ):
        response = api.get(path)
        assert response.status_code == 200, path
        assert json.loads(response.content)  # valid JSON, the surrogate escaped
    listed = api.get("/api/v1/events").json()["events"][0]["data"]
    assert listed["note"] == LONE


def test_it_shows_stored_event_data_with_a_lone_surrogate_on_pages(
    dashboard: Client, staff_client: Client, stored: Delivery
) -> None:
    event = stored.event
    attempt = stored.attempt_log.get()
    for client, path, shows_data in (
        (dashboard, "/events/", False),
        (dashboard, f"/events/{event.public_id}/", True),
        (dashboard, f"/deliveries/{stored.public_id}/", True),
        (dashboard, f"/webhooks/{stored.endpoint.public_id}/", False),
        (staff_client, "/admin/deliveries/event/", False),
        (staff_client, f"/admin/deliveries/event/{event.pk}/change/", True),
        (staff_client, f"/admin/deliveries/delivery/{stored.pk}/change/", False),
        (staff_client, f"/admin/deliveries/deliveryattempt/{attempt.pk}/change/", True),
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        if shows_data:
            assert "\\ud83d" in response.content.decode(), path  # shown, escaped


def test_it_shows_a_caught_body_with_a_lone_surrogate(
    merchant: Merchant, dashboard: Client, staff_client: Client
) -> None:
    inspector = Inspector.objects.create(merchant=merchant, name="Surrogates")
    caught = Client().post(inspector.path, LONE_JSON, content_type="application/json")
    assert caught.status_code == 200
    page = dashboard.get(f"/inspector/{inspector.public_id}/")
    assert page.status_code == 200
    assert "\\ud83d" in page.content.decode()
    request = inspector.requests.get()
    admin = staff_client.get(f"/admin/tooling/inspectorrequest/{request.pk}/change/")
    assert admin.status_code in (200, 404)  # 404 when staff have no page for it


def test_it_returns_and_shows_a_loyalty_answer_with_a_lone_surrogate(
    merchant: Merchant, api: Client, dashboard: Client, receiver: Receiver
) -> None:
    LoyaltyApp.objects.create(merchant=merchant, url=receiver.url("/loyalty"))
    receiver.answers = [Answer(200, LONE_JSON.encode(), {"content-type": "application/json"})]
    response = api.post(
        "/api/v1/loyalty/fetch-member-point", {"m": 1}, content_type="application/json"
    )
    assert response.status_code == 200
    assert json.loads(response.content) == {"note": LONE}
    assert LoyaltyCall.objects.count() == 1
    page = dashboard.get("/external-apps/")
    assert page.status_code == 200
    assert "\\ud83d" in page.content.decode()
