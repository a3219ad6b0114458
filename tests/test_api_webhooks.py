"""/api/v1/webhooks, replaying the requests of myPOS's webhook API documentation."""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, Merchant
from catalogue.models import EventType
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from lib import http

FORM = "application/x-www-form-urlencoded"
SEED_URL = "https://mywebsite.com/webhook-callback"
# The seed's detail example secret (its create example is replayed in test_all_events.py).
SEED_SECRET = "Um6OcCJkN6tOXzUOOmcCyvOcKNFkuNpz"
RFC1123 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")


@pytest.fixture(autouse=True)
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DNS here: seed hosts resolve to a documentation-free public address (never contacted)."""

    def resolve(host: str, port: int) -> list[Any]:
        if host.endswith(("mywebsite.com", "example.com", "google.com")):
            return [ipaddress.ip_address("93.184.215.14")]
        if host in ("localhost",):
            return [ipaddress.ip_address("127.0.0.1")]
        raise OSError("no DNS in tests")

    monkeypatch.setattr(http, "resolve", resolve)


@pytest.fixture
def key(merchant: Merchant) -> str:
    return ApiKey.issue(merchant, "POS")[1]


@pytest.fixture
def outsider_key(outsider_merchant: Merchant) -> str:
    return ApiKey.issue(outsider_merchant, "Other POS")[1]


@pytest.fixture
def api(key: str) -> Client:
    return Client(headers={"authorization": f"Bearer {key}"})


def form_post(api: Client, path: str, body: str) -> Any:
    return api.post(path, body, content_type=FORM)


def test_it_replays_the_seeds_create_list_get_patch_delete(api: Client, merchant: Merchant) -> None:
    created = form_post(
        api,
        "/api/v1/webhooks",
        "payload_url=https%3A%2F%2Fmywebsite.com%2Fwebhook-callback&secret=" + SEED_SECRET,
    )
    assert created.status_code == 201, created.content
    webhook = created.json()["webhook"]
    for field in ("created_on", "id", "is_active", "payload_url", "secret"):
        assert field in webhook
    assert RFC1123.match(webhook["created_on"])
    assert webhook["is_active"] is True
    assert webhook["payload_url"] == SEED_URL
    assert webhook["secret"] == SEED_SECRET
    assert webhook["events"] == []
    webhook_id = webhook["id"]

    listed = api.get("/api/v1/webhooks")
    assert listed.status_code == 200
    body = listed.json()
    assert body["pagination"] == {"page": 1, "size": 20, "total": 1}
    [item] = body["webhooks"]
    assert (item["id"], item["payload_url"], item["is_active"]) == (webhook_id, SEED_URL, True)
    assert RFC1123.match(item["created_on"])

    detail = api.get(f"/api/v1/webhooks/{webhook_id}")
    assert detail.status_code == 200
    assert detail.json()["webhook"]["id"] == webhook_id
    assert "events" in detail.json()["webhook"]

    patched = form_post(api, f"/api/v1/webhooks/{webhook_id}", "")  # wrong method: 405
    assert patched.status_code == 405
    patched = api.patch(
        f"/api/v1/webhooks/{webhook_id}",
        "payload_url=https%3A%2F%2Fmywebsite.com%2Fwebhook-callback&is_active=false",
        content_type=FORM,
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["webhook"]["is_active"] is False
    assert not Endpoint.objects.get(public_id=webhook_id).is_enabled

    deleted = api.delete(f"/api/v1/webhooks/{webhook_id}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert api.get(f"/api/v1/webhooks/{webhook_id}").status_code == 404
    assert not Endpoint.objects.filter(merchant=merchant).exists()


def test_it_creates_with_events_and_settings_from_json(api: Client) -> None:
    response = api.post(
        "/api/v1/webhooks",
        {
            "payload_url": "https://example.com/pos",
            "events": ["pos.payment.completed", "receipts.update"],
            "category": "payments",
            "description": "Till 1",
            "log_mode": "error",
            "retry_policy": "fixed",
            "fixed_retries": 1,
            "fixed_cooldown": 7,
            "payload_style": "thin",
            "timeout": 10,
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    webhook = response.json()["webhook"]
    assert sorted(e["name"] for e in webhook["events"]) == [
        "pos.payment.completed",
        "receipts.update",
    ]
    assert webhook["secret"].startswith("whsec_")  # generated when absent
    endpoint = Endpoint.objects.get(public_id=webhook["id"])
    assert endpoint.secret == webhook["secret"]
    assert (endpoint.log_mode, endpoint.retry_policy, endpoint.payload_style) == (
        "error",
        "fixed",
        "thin",
    )
    assert (endpoint.timeout_seconds, endpoint.fixed_cooldown_seconds) == (10, 7)
    assert endpoint.category is not None and endpoint.category.slug == "payments"


def test_it_takes_repeated_form_fields_for_events(api: Client) -> None:
    response = form_post(
        api,
        "/api/v1/webhook",  # SalesPlay's singular path
        "payload_url=https%3A%2F%2Fexample.com%2Fh&events=products.update&events=customers.update",
    )
    assert response.status_code == 201, response.content
    names = {e["name"] for e in response.json()["webhook"]["events"]}
    assert names == {"products.update", "customers.update"}


def test_it_paginates_the_list(api: Client, merchant: Merchant) -> None:
    for n in range(25):
        Endpoint.objects.create(merchant=merchant, url=f"https://example.com/{n}")
    page2 = api.get("/api/v1/webhooks?page=2&size=10").json()
    assert page2["pagination"] == {"page": 2, "size": 10, "total": 25}
    assert len(page2["webhooks"]) == 10
    page3 = api.get("/api/v1/webhooks?page=3&size=10").json()
    assert len(page3["webhooks"]) == 5
    ids = {w["id"] for w in page2["webhooks"]} | {w["id"] for w in page3["webhooks"]}
    assert len(ids) == 15


@pytest.mark.parametrize(
    ("query", "field"),
    [("size=101", "size"), ("size=0", "size"), ("page=-1", "page"), ("page=abc", "page")],
)
def test_it_refuses_bad_pagination(api: Client, query: str, field: str) -> None:
    response = api.get(f"/api/v1/webhooks?{query}")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"payload_url": "ftp://example.com/x"}, "payload_url", "Only http:// and https://"),
        ({"payload_url": "file:///etc/passwd"}, "payload_url", "Only http:// and https://"),
        ({"payload_url": "not a url"}, "payload_url", "valid URL"),
        ({"payload_url": "https://" + "a" * 2050 + ".com/"}, "payload_url", "2048"),
        ({"payload_url": "https://10.0.0.6/x"}, "payload_url", "not a public address"),
        ({"payload_url": "https://example.com/x", "events": ["nope.update"]}, "events", "nope"),
        (
            {"payload_url": "https://example.com/x", "secret": "fifteen-bytes!!"},
            "secret",
            "16 bytes",
        ),
        ({"payload_url": "https://example.com/x", "timeout": 31}, "timeout", "30"),
        ({}, "payload_url", "required"),
    ],
)
def test_it_refuses_invalid_webhooks_with_a_field_error(
    api: Client, merchant: Merchant, body: dict[str, Any], field: str, message: str
) -> None:
    response = api.post("/api/v1/webhooks", body, content_type="application/json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert message in str(error["fields"][field])
    assert not Endpoint.objects.filter(merchant=merchant).exists()


def test_it_refuses_http_when_https_is_required(api: Client, settings: Any) -> None:
    settings.WEBHOOK_REQUIRE_HTTPS = True
    response = api.post(
        "/api/v1/webhooks", {"payload_url": "http://example.com/x"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "https://" in response.json()["error"]["fields"]["payload_url"]


def test_it_refuses_a_wrong_content_type_and_bad_json(api: Client) -> None:
    xml = api.post("/api/v1/webhooks", "<webhook/>", content_type="application/xml")
    assert xml.status_code == 415
    assert xml.json()["error"]["code"] == "unsupported_media_type"
    broken = api.post("/api/v1/webhooks", "{nope", content_type="application/json")
    assert broken.status_code == 400
    assert "JSON" in broken.json()["error"]["message"]


@pytest.mark.parametrize(
    "header", [None, "Bearer whk_wrong", "Basic dXNlcjpwYXNz", "Bearer", "Token abc"]
)
def test_it_answers_401_without_a_valid_key(db: None, header: str | None) -> None:
    client = Client(headers={"authorization": header} if header else {})
    response = client.get("/api/v1/webhooks")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_a_revoked_key(api: Client, merchant: Merchant) -> None:
    ApiKey.objects.get(merchant=merchant).revoke()
    assert api.get("/api/v1/webhooks").status_code == 401


def test_it_isolates_merchants(api: Client, outsider_key: str, outsider_merchant: Merchant) -> None:
    theirs = Endpoint.objects.create(merchant=outsider_merchant, url="https://example.com/theirs")
    event = Event.objects.create_event(outsider_merchant, "receipts.update", {})
    delivery = Delivery.objects.create(
        merchant=outsider_merchant, event=event, endpoint=theirs, status="failed"
    )
    assert api.get("/api/v1/webhooks").json()["webhooks"] == []
    for method, path in [
        ("get", f"/api/v1/webhooks/{theirs.public_id}"),
        ("patch", f"/api/v1/webhooks/{theirs.public_id}"),
        ("delete", f"/api/v1/webhooks/{theirs.public_id}"),
        ("post", f"/api/v1/webhooks/{theirs.public_id}/test"),
        ("post", f"/api/v1/webhooks/{theirs.public_id}/rotate-secret"),
        ("post", f"/api/v1/webhooks/{theirs.public_id}/recover"),
        ("get", f"/api/v1/events/{event.public_id}"),
        ("get", f"/api/v1/deliveries/{delivery.public_id}"),
        ("post", f"/api/v1/deliveries/{delivery.public_id}/retry"),
    ]:
        response = getattr(api, method)(path, content_type="application/json")
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    assert api.get("/api/v1/events").json()["events"] == []
    assert api.get("/api/v1/deliveries").json()["deliveries"] == []
    theirs.refresh_from_db()
    delivery.refresh_from_db()
    assert theirs.is_enabled and delivery.status == "failed"


def test_it_never_shows_secrets_or_keys_in_lists_or_logs(
    api: Client, key: str, merchant: Merchant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = api.post(
        "/api/v1/webhooks",
        {"payload_url": "https://shop:hunter22@example.com/x", "secret": SEED_SECRET},
        content_type="application/json",
    ).json()["webhook"]
    assert created["payload_url"] == "https://shop:****@example.com/x"
    listing = api.get("/api/v1/webhooks").content.decode()
    detail = api.get(f"/api/v1/webhooks/{created['id']}").content.decode()
    api.get("/api/v1/webhooks/ep_missing")  # a 404 is logged by Django
    for text in (listing, detail, caplog.text):
        assert SEED_SECRET not in text
        assert "hunter22" not in text
        assert key not in text
    assert SEED_SECRET[:6] + "****" in listing  # masked, so keys can still be told apart


def test_it_rotates_a_secret_and_shows_the_new_one_once(api: Client, merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="https://example.com/x")
    old = endpoint.secret
    response = api.post(f"/api/v1/webhooks/{endpoint.public_id}/rotate-secret")
    assert response.status_code == 200
    new = response.json()["webhook"]["secret"]
    endpoint.refresh_from_db()
    assert new == endpoint.secret != old
    assert endpoint.signing_secrets() == [new, old]
    assert new not in api.get(f"/api/v1/webhooks/{endpoint.public_id}").content.decode()


def test_it_recovers_failed_deliveries_since_a_time(api: Client, merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="https://example.com/x")
    event = Event.objects.create_event(merchant, "receipts.update", {})
    old = Delivery.objects.create(
        merchant=merchant,
        event=event,
        endpoint=endpoint,
        status="failed",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    recent = Delivery.objects.create(
        merchant=merchant, event=event, endpoint=endpoint, status="failed"
    )
    response = api.post(
        f"/api/v1/webhooks/{endpoint.public_id}/recover",
        {"since": "2026-06-01T00:00:00Z"},
        content_type="application/json",
    )
    assert response.status_code == 202
    assert response.json() == {"recovered": 1}
    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.status, recent.status) == ("failed", "pending")
    missing = api.post(f"/api/v1/webhooks/{endpoint.public_id}/recover", {}, "application/json")
    assert missing.status_code == 400 and "since" in missing.json()["error"]["fields"]


def test_it_lists_the_catalogue(api: Client) -> None:
    body = api.get("/api/v1/event-types").json()
    names = {t["name"]: t for t in body["event_types"]}
    assert len(names) == EventType.objects.count()
    assert names["pos.payment.completed"]["category"] == {"id": "payments", "name": "Payments"}


def test_it_uses_rfc_1123_dates_in_utc(api: Client, merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="https://example.com/x")
    created_on = api.get(f"/api/v1/webhooks/{endpoint.public_id}").json()["webhook"]["created_on"]
    assert abs(parsedate_to_datetime(created_on) - timezone.now()).total_seconds() < 60


def test_it_refuses_a_blank_choice_in_a_form_encoded_patch(api: Client, merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url=SEED_URL, log_mode="error")
    response = api.patch(
        f"/api/v1/webhooks/{endpoint.public_id}", "log_mode=&retry_policy=fixed", content_type=FORM
    )
    assert response.status_code == 400, response.content
    assert "log_mode" in response.json()["error"]["fields"]
    endpoint.refresh_from_db()
    assert endpoint.log_mode == "error" and endpoint.retry_policy == "exponential"
