"""The external loyalty app: the POS calls our API, we call the app on 127.0.0.1 for real."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant, User
from lib import signing
from tests.conftest import Answer, Receiver
from tooling.models import LoyaltyApp, LoyaltyCall

ACTIONS = ["fetch-member-point", "order-complete", "validate-coupon"]
JSON = {"content-type": "application/json"}


@pytest.fixture
def pos(merchant: Merchant) -> Client:
    """The POS system, calling the API with the merchant's key."""
    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})


@pytest.fixture
def app(merchant: Merchant, receiver: Receiver) -> LoyaltyApp:
    return LoyaltyApp.objects.create(merchant=merchant, url=receiver.url("/loyalty"))


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def call(pos: Client, action: str, body: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body)
    return pos.post(f"/api/v1/loyalty/{action}", raw, content_type="application/json")


def flashes(client: Client, response: Any) -> list[str]:
    while response.status_code in (301, 302):
        response = client.get(response["Location"])
    page = response.content.decode()
    return [
        html.unescape(m)
        for m in re.findall(r'<div class="message [^"]+" role="\w+">(.*?)</div>', page)
    ]


# --- forwarding -----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_it_forwards_each_action_signed_and_returns_the_apps_answer(
    pos: Client, app: LoyaltyApp, receiver: Receiver, action: str
) -> None:
    receiver.answers = [Answer(200, b'{"member_code": "M-1", "points": 120}', JSON)]
    body = b'{"member_code": "M-1",  "coupon_code": "WELCOME10"}'  # sent byte for byte

    response = call(pos, action, body)

    assert response.status_code == 200
    assert response.json() == {"member_code": "M-1", "points": 120}
    [sent] = receiver.requests
    assert (sent.method, sent.path, sent.body) == ("POST", "/loyalty", body)
    assert sent.headers["loyalty-action"] == action
    assert sent.headers["content-type"] == "application/json"
    assert signing.verify(
        app.secret,
        sent.headers["webhook-id"],
        sent.headers["webhook-timestamp"],
        sent.body,
        sent.headers["webhook-signature"],
    )
    logged = LoyaltyCall.objects.get()
    assert (logged.action, logged.response_status, logged.succeeded) == (action, 200, True)
    assert logged.message_id == sent.headers["webhook-id"]


def test_it_returns_the_apps_own_error_status_and_body(
    pos: Client, app: LoyaltyApp, receiver: Receiver
) -> None:
    receiver.answers = [Answer(422, b'{"valid": false, "reason": "unknown coupon"}', JSON)]
    response = call(pos, "validate-coupon", {"coupon_code": "NOPE"})
    assert response.status_code == 422
    assert response.json() == {"valid": False, "reason": "unknown coupon"}
    assert LoyaltyCall.objects.get().error == "HTTP 422"


def test_it_answers_504_and_logs_408_when_the_app_is_too_slow(
    pos: Client, app: LoyaltyApp, receiver: Receiver
) -> None:
    app.timeout_seconds = 1
    app.save()
    receiver.answers = [Answer(200, b'{"points": 1}', JSON, delay=2)]
    response = call(pos, "fetch-member-point", {"member_code": "M-1"})
    assert response.status_code == 504
    assert response.json()["error"] == {
        "code": "loyalty_app_timeout",
        "message": "The loyalty app did not answer within 1 s.",
        "fields": {},
    }
    logged = LoyaltyCall.objects.get()
    assert (logged.response_status, logged.succeeded) == (408, False)
    assert "timed out" in logged.error


def test_it_answers_502_when_the_app_is_unreachable(pos: Client, app: LoyaltyApp) -> None:
    app.url = "http://127.0.0.1:9/loyalty"  # nothing listens on the discard port
    app.save()
    response = call(pos, "order-complete", {"invoice_number": "INV-1"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "loyalty_app_unreachable"
    assert error["message"] == "The loyalty app could not be reached: connection refused."
    assert LoyaltyCall.objects.get().response_status is None


def test_it_answers_502_when_the_app_does_not_answer_json(
    pos: Client, app: LoyaltyApp, receiver: Receiver
) -> None:
    receiver.answers = [Answer(200, b"<html>Points: 120</html>", {"content-type": "text/html"})]
    response = call(pos, "fetch-member-point", {"member_code": "M-1"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "loyalty_app_bad_answer"
    logged = LoyaltyCall.objects.get()
    assert logged.response_body == "<html>Points: 120</html>" and not logged.succeeded


def test_it_answers_404_for_a_disabled_action_or_no_app(
    pos: Client, app: LoyaltyApp, receiver: Receiver
) -> None:
    app.validate_coupon = False
    app.save()
    response = call(pos, "validate-coupon", {"coupon_code": "WELCOME10"})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        "Validate Coupon is not enabled for your loyalty app."
    )
    app.delete()
    response = call(pos, "fetch-member-point", {"member_code": "M-1"})
    assert response.status_code == 404
    assert "No loyalty app is connected" in response.json()["error"]["message"]
    assert receiver.requests == [] and not LoyaltyCall.objects.exists()


def test_it_refuses_what_is_not_a_json_object(pos: Client, app: LoyaltyApp) -> None:
    assert call(pos, "fetch-member-point", [1, 2]).status_code == 400
    assert call(pos, "fetch-member-point", b"").status_code == 400
    form = pos.post("/api/v1/loyalty/fetch-member-point", {"member_code": "M-1"})
    assert form.status_code == 415
    big = call(pos, "fetch-member-point", {"note": "x" * 256 * 1024})
    assert big.status_code == 413
    assert Client().post("/api/v1/loyalty/fetch-member-point").status_code == 401
    assert not LoyaltyCall.objects.exists()


@pytest.mark.parametrize(
    ("mode", "logged"), [("full", {200, 500}), ("error", {500}), ("none", set())]
)
def test_it_logs_calls_by_the_apps_log_mode(
    pos: Client, app: LoyaltyApp, receiver: Receiver, mode: str, logged: set[int]
) -> None:
    app.log_mode = mode
    app.save()
    receiver.answers = [Answer(200, b"{}", JSON), Answer(500, b'{"error": "down"}', JSON)]
    assert call(pos, "fetch-member-point", {}).status_code == 200
    assert call(pos, "fetch-member-point", {}).status_code == 500
    assert set(LoyaltyCall.objects.values_list("response_status", flat=True)) == logged


def test_it_calls_only_the_callers_own_app(
    app: LoyaltyApp, receiver: Receiver, outsider_merchant: Merchant
) -> None:
    outsider_pos = Client(
        headers={"authorization": f"Bearer {ApiKey.issue(outsider_merchant, 'POS')[1]}"}
    )
    assert call(outsider_pos, "fetch-member-point", {"member_code": "M-1"}).status_code == 404
    assert receiver.requests == []


# --- the External apps page ---------------------------------------------------------------


def test_it_connects_a_loyalty_app_from_the_page(
    client: Client, merchant: Merchant, receiver: Receiver
) -> None:
    page = client.get("/external-apps/").content.decode()
    assert "Connect a loyalty app" in page and "No calls logged yet" in page
    form = {
        "url": receiver.url("/loyalty"),
        "timeout_seconds": 31,
        "log_mode": "error",
        "fetch_member_point": "on",
        "validate_coupon": "on",
    }
    invalid = client.post("/external-apps/", {**form, "url": "ftp://example.com/x"})
    assert invalid.status_code == 400
    assert "Ensure this value is less than or equal to 30." in invalid.content.decode()
    assert not LoyaltyApp.objects.exists()

    response = client.post("/external-apps/", {**form, "timeout_seconds": 5})
    assert flashes(client, response) == [f"Loyalty app connected: {receiver.url('/loyalty')}"]
    app = LoyaltyApp.objects.get(merchant=merchant)
    assert (app.timeout_seconds, app.log_mode) == (5, "error")
    assert [a.value for a in app.enabled_actions()] == ["fetch-member-point", "validate-coupon"]
    assert app.secret.startswith("whsec_")
    page = client.get("/external-apps/").content.decode()
    assert app.secret not in page
    revealed = client.post("/external-apps/loyalty/secret/reveal/")
    assert app.secret in revealed.content.decode()
    assert "no-store" in revealed["Cache-Control"]


def test_it_lists_calls_newest_first_a_page_at_a_time(
    client: Client, pos: Client, app: LoyaltyApp, receiver: Receiver
) -> None:
    receiver.default = Answer(200, b'{"points": 7}', JSON)
    for n in range(1, 23):
        assert call(pos, "fetch-member-point", {"member_code": f"M-{n:03}"}).status_code == 200
    page = html.unescape(client.get("/external-apps/").content.decode())
    assert page.index('"member_code": "M-022"') < page.index('"member_code": "M-021"')
    assert '"member_code": "M-002"' not in page and "Older" in page
    assert "Fetch Member Point" in page and '"points": 7' in page
    older = client.get("/external-apps/?before=" + str(LoyaltyCall.objects.order_by("id")[2].pk))
    assert '"member_code": "M-002"' in html.unescape(older.content.decode())


def test_it_removes_the_app_after_confirming(client: Client, app: LoyaltyApp) -> None:
    confirm = client.get("/external-apps/loyalty/remove/confirm/").content.decode()
    assert "Remove the loyalty app?" in confirm
    assert client.get("/external-apps/loyalty/remove/").status_code == 405
    response = client.post("/external-apps/loyalty/remove/")
    assert "Loyalty app removed." in flashes(client, response)[0]
    assert not LoyaltyApp.objects.exists()


def test_it_shows_each_merchant_only_its_own_app_and_calls(
    app: LoyaltyApp, pos: Client, receiver: Receiver, outsider: User
) -> None:
    receiver.default = Answer(200, b'{"points": 99}', JSON)
    call(pos, "fetch-member-point", {"member_code": "OWNER-ONLY"})
    client = Client()
    client.force_login(outsider)
    page = client.get("/external-apps/").content.decode()
    assert "OWNER-ONLY" not in page and receiver.url("/loyalty") not in page
    assert "Connect a loyalty app" in page
    assert client.post("/external-apps/loyalty/secret/reveal/").status_code == 404
    assert client.post("/external-apps/loyalty/remove/").status_code == 404
    assert LoyaltyApp.objects.filter(pk=app.pk).exists()
