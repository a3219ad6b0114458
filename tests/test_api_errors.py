"""Errors in the API's one JSON shape (issue 14, item 8): unknown paths, deeply nested JSON,
a loyalty app answering a status we cannot pass on, and the wrong content type."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant
from tests.conftest import Answer, Receiver
from tooling.models import LoyaltyApp, LoyaltyCall


@pytest.fixture
def api(merchant: Merchant) -> Client:
    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})


def assert_error_shape(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"} and error["code"] == code
    return error


@pytest.mark.parametrize(
    "path", ["/api/v2/events", "/api/v1/nothing", "/api/", "/api/v1/webhooks/ep_1/nope"]
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_it_answers_unknown_api_paths_with_a_json_404(api: Client, path: str, method: str) -> None:
    assert_error_shape(getattr(api, method)(path), 404, "not_found")
    assert_error_shape(getattr(Client(), method)(path), 404, "not_found")


def test_it_refuses_json_nested_too_deep_with_a_json_400(api: Client, merchant: Merchant) -> None:
    deep = "[" * 2000 + "]" * 2000
    body = '{"type": "receipts.update", "data": ' + deep + "}"
    error = assert_error_shape(
        api.post("/api/v1/events", body, content_type="application/json"), 400, "invalid_request"
    )
    assert "nested deeper than 64 levels" in error["message"]
    just_over = '{"type": "receipts.update", "data": ' + "[" * 64 + "]" * 64 + "}"
    response = api.post("/api/v1/events", just_over, content_type="application/json")
    assert_error_shape(response, 400, "invalid_request")
    fine = '{"type": "receipts.update", "data": ' + "[" * 40 + "]" * 40 + "}"
    assert api.post("/api/v1/events", fine, content_type="application/json").status_code == 202


@pytest.mark.parametrize("status", [600, 799, 999])
def test_it_answers_502_when_the_loyalty_app_answers_a_status_beyond_599(
    api: Client, merchant: Merchant, receiver: Receiver, status: int
) -> None:
    LoyaltyApp.objects.create(merchant=merchant, url=receiver.url("/loyalty"))
    receiver.answers = [Answer(status, b'{"points": 1}', {"content-type": "application/json"})]
    response = api.post(
        "/api/v1/loyalty/fetch-member-point", {"m": 1}, content_type="application/json"
    )
    error = assert_error_shape(response, 502, "loyalty_app_bad_answer")
    assert str(status) in error["message"]
    assert LoyaltyCall.objects.get().response_status == status


def test_it_answers_415_to_a_form_encoded_loyalty_call(api: Client, merchant: Merchant) -> None:
    LoyaltyApp.objects.create(merchant=merchant, url="http://127.0.0.1:9/loyalty")
    response = api.post(
        "/api/v1/loyalty/fetch-member-point",
        "member_code=M-1",
        content_type="application/x-www-form-urlencoded",
    )
    assert_error_shape(response, 415, "unsupported_media_type")


def test_it_answers_a_server_error_under_api_in_the_json_shape(
    api: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deliveries import api as deliveries_api

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(deliveries_api.EventTypeOutput, "to_representation", broken)
    api.raise_request_exception = False
    assert_error_shape(api.get("/api/v1/event-types"), 500, "server_error")
