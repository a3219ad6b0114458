"""Per-merchant limits (issue 14, item 3): webhooks, API keys, inspectors and one-off URLs,
with clear errors, and staff raising them per merchant in the admin."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant, User
from catalogue.models import EventType
from endpoints.models import Endpoint
from tooling.models import Inspector


@pytest.fixture
def api(merchant: Merchant) -> Client:
    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def fill_webhooks(merchant: Merchant, count: int) -> None:
    Endpoint.objects.bulk_create(
        Endpoint(merchant=merchant, url=f"http://127.0.0.1:9/{n}") for n in range(count)
    )


def create_webhook(api: Client) -> Any:
    return api.post(
        "/api/v1/webhooks",
        {"payload_url": "http://127.0.0.1:9/new", "events": ["receipts.update"]},
        content_type="application/json",
    )


def test_it_refuses_a_webhook_past_the_limit_in_the_api(
    api: Client, merchant: Merchant, settings: Any
) -> None:
    assert settings.MERCHANT_MAX_WEBHOOKS == 50
    fill_webhooks(merchant, 50)
    refused = create_webhook(api)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "limit_reached"
    assert "You have 50 webhooks, the most your account allows (50)" in error["message"]
    assert Endpoint.objects.filter(merchant=merchant).count() == 50


def test_it_refuses_a_webhook_past_the_limit_in_the_dashboard(
    client: Client, merchant: Merchant, settings: Any
) -> None:
    settings.MERCHANT_MAX_WEBHOOKS = 3
    fill_webhooks(merchant, 3)
    receipts = EventType.objects.get(name="receipts.update")
    response = client.post(
        "/webhooks/add/",
        {
            "url": "http://127.0.0.1:9/new",
            "event_types": [receipts.pk],
            "log_mode": "full",
            "payload_style": "full",
            "retry_policy": "exponential",
            "fixed_retries": 1,
            "fixed_cooldown_seconds": 7,
            "timeout_seconds": 30,
        },
    )
    assert response.status_code == 200
    assert "the most your account allows (3)" in html.unescape(response.content.decode())
    assert Endpoint.objects.filter(merchant=merchant).count() == 3


def test_it_refuses_an_api_key_past_the_limit(
    client: Client, merchant: Merchant, settings: Any
) -> None:
    settings.MERCHANT_MAX_API_KEYS = 2
    ApiKey.issue(merchant, "one")
    revoked, _ = ApiKey.issue(merchant, "old")
    revoked.revoke()  # revoked keys do not count
    assert client.post("/api-keys/create/", {"name": "two"}).status_code == 200
    refused = client.post("/api-keys/create/", {"name": "three"})
    assert refused.status_code == 400
    assert "You have 2 active API keys" in html.unescape(refused.content.decode())
    assert ApiKey.objects.filter(merchant=merchant).active().count() == 2


def test_it_limits_one_off_urls_per_hour(
    api: Client, merchant: Merchant, redis_conn: Any, settings: Any
) -> None:
    settings.MERCHANT_MAX_ONE_OFF_PER_HOUR = 2
    body = {"type": "receipts.update", "data": {}, "webhook_url": "http://127.0.0.1:9/once"}
    codes = [
        api.post("/api/v1/events", body, content_type="application/json").status_code
        for _ in range(2)
    ]
    assert codes == [202, 202]
    refused = api.post("/api/v1/events", body, content_type="application/json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "limit_reached"
    assert "one-off webhook_url" in refused.json()["error"]["message"]
    assert 0 < int(refused["Retry-After"]) <= 3600
    # Events without a one-off URL are not limited by it.
    plain = {"type": "receipts.update", "data": {}}
    assert api.post("/api/v1/events", plain, content_type="application/json").status_code == 202


def test_it_counts_the_api_rate_limit_per_merchant_not_per_key(
    merchant: Merchant, redis_conn: Any, settings: Any
) -> None:
    settings.API_RATE_LIMIT = (3, 60)
    keys = [ApiKey.issue(merchant, f"k{n}")[1] for n in range(2)]
    codes = [
        Client(headers={"authorization": f"Bearer {keys[n % 2]}"})
        .get("/api/v1/event-types")
        .status_code
        for n in range(4)
    ]
    assert codes == [200, 200, 200, 429]


def test_it_lets_staff_raise_a_merchants_limit_in_the_admin(
    staff_client: Client, api: Client, merchant: Merchant, settings: Any
) -> None:
    settings.MERCHANT_MAX_WEBHOOKS = 2
    fill_webhooks(merchant, 2)
    assert create_webhook(api).status_code == 403

    page = staff_client.get(f"/admin/accounts/merchant/{merchant.pk}/change/")
    assert b"max_webhooks" in page.content and b"max_one_off_per_hour" in page.content
    assert b"Webhooks at most; empty means 2." in page.content
    saved = staff_client.post(
        f"/admin/accounts/merchant/{merchant.pk}/change/",
        {
            "name": merchant.name,
            "notification_email": "",
            "retention_days": "",
            "max_webhooks": "3",
            "max_api_keys": "",
            "max_inspectors": "",
            "max_one_off_per_hour": "",
        },
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    merchant.refresh_from_db()
    assert merchant.max_webhooks == 3 and merchant.limit("api_keys") == 20
    assert create_webhook(api).status_code == 201
    assert create_webhook(api).status_code == 403


def test_it_uses_the_merchants_own_inspector_limit(client: Client, merchant: Merchant) -> None:
    merchant.max_inspectors = 1
    merchant.save()
    assert client.post("/inspector/create/", {"name": "one"}).status_code == 302
    refused = client.post("/inspector/create/", {"name": "two"})
    assert refused.status_code == 400
    assert "the most your account allows (1)" in html.unescape(refused.content.decode())
    assert Inspector.objects.filter(merchant=merchant).count() == 1
