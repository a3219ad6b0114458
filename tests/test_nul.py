"""NUL characters (issue 14, item 4): PostgreSQL's jsonb and text cannot store U+0000, so
event data with one is refused with a clear 400, and inspectors store bodies with U+FFFD
in its place. Never a 500, never an accepted event that is lost. Run on both databases."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant, User
from deliveries import emit
from deliveries.models import Event
from lib.event_data import InvalidEventData
from tests.conftest import Answer, Receiver
from tooling.models import Inspector, InspectorRequest, LoyaltyApp, LoyaltyCall


@pytest.fixture
def api(merchant: Merchant) -> Client:
    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})


@pytest.mark.parametrize(
    "data",
    [{"note": "a\u0000b"}, {"a\u0000": 1}, [{"deep": ["x", "\u0000"]}], "\u0000"],
    ids=["value", "key", "nested", "string"],
)
def test_it_refuses_event_data_with_a_nul_character_with_a_400(
    api: Client, merchant: Merchant, data: Any
) -> None:
    body = json.dumps({"type": "receipts.update", "data": data})
    assert "\\u0000" in body
    response = api.post("/api/v1/events", body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert "NUL" in error["fields"]["data"]
    assert not Event.objects.filter(merchant=merchant).exists()


def test_it_still_accepts_the_escaped_text_backslash_u0000(api: Client) -> None:
    body = json.dumps({"type": "receipts.update", "data": {"note": "\\u0000"}})
    assert api.post("/api/v1/events", body, content_type="application/json").status_code == 202


def test_it_stores_a_caught_body_with_a_nul_byte(merchant: Merchant) -> None:
    inspector = Inspector.objects.create(merchant=merchant, name="NUL")
    answer = Client().post(inspector.path, b"before\x00after", content_type="text/plain")
    assert answer.status_code == 200
    stored = InspectorRequest.objects.get(inspector=inspector)
    assert stored.body == "before\ufffdafter" and stored.size == 12


def test_it_logs_a_loyalty_answer_with_a_nul_byte(
    merchant: Merchant, api: Client, receiver: Receiver
) -> None:
    LoyaltyApp.objects.create(merchant=merchant, url=receiver.url("/loyalty"))
    receiver.answers = [Answer(200, b'{"points": 1}\x00', {"content-type": "application/json"})]
    response = api.post(
        "/api/v1/loyalty/fetch-member-point", {"m": 1}, content_type="application/json"
    )
    assert response.status_code == 502  # not JSON, said clearly
    assert LoyaltyCall.objects.get().response_body == '{"points": 1}\ufffd'


def test_it_refuses_nul_in_event_data_emitted_from_python_with_a_clear_error(
    merchant: Merchant,
) -> None:
    with pytest.raises(InvalidEventData, match="NUL"):
        emit(merchant, "receipts.update", {"note": "a\x00b"})
    assert not Event.objects.exists()  # the same on SQLite and on PostgreSQL


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/deliveries?before=%F2%AB%AF%AAD%00b",
        "/api/v1/events?type=a%00b",
        "/api/v1/events/evt_a%00b",
        "/api/v1/webhooks/ep_%00",
    ],
)
def test_it_answers_400_to_a_nul_in_an_api_path_or_query(api: Client, path: str) -> None:
    # PostgreSQL refuses U+0000 in a text value: found by schemathesis as a 500.
    response = api.get(path)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_it_answers_400_to_a_nul_in_a_dashboard_query(client: Client, owner: User) -> None:
    client.force_login(owner)
    assert client.get("/webhooks/?q=a%00b").status_code == 400
