"""Sign-in links: the operator API signs a merchant into its dashboard from the back office,
once, before the link expires, optionally embedded in an iframe of the allowed origins."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, Merchant, OperatorKey, PortalLink
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver

BACK_OFFICE = "https://backoffice.example"


@pytest.fixture(autouse=True)
def _fresh_limits(redis_conn: Any) -> None:
    """Rate limit counters live in the test Redis, emptied around each test."""


def make_link(operator: Client, merchant: Merchant, query: str = "", **body: Any) -> Any:
    return operator.post(
        f"/api/v1/merchants/{merchant.public_id}/portal-links{query}",
        body,
        content_type="application/json",
    )


def path_of(url: str) -> str:
    return urlsplit(url).path


def signed_in_as(client: Client) -> Merchant | None:
    response = client.get("/webhooks/")
    if response.status_code != 200:
        return None
    return response.context["user"].merchant


def test_it_signs_a_merchant_in_once_without_a_password(
    operator: Client, merchant: Merchant, outsider_merchant: Merchant, caplog: Any
) -> None:
    Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/mine")
    Endpoint.objects.create(merchant=outsider_merchant, url="http://127.0.0.1:9/theirs")
    made = make_link(operator, merchant, session_minutes=30)
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["url"].startswith("http://") and "/portal/" in body["url"]
    expires = PortalLink.objects.get().expires_at
    assert timedelta(minutes=4) < expires - timezone.now() <= timedelta(minutes=5)
    assert body["expires_at"].endswith("Z")

    browser = Client()
    with caplog.at_level(logging.INFO, logger="webhooks.portal"):
        opened = browser.get(path_of(body["url"]))
    assert opened.status_code == 302 and opened["Location"] == "/webhooks/"
    assert signed_in_as(browser) == merchant
    page = browser.get("/webhooks/").content.decode()
    assert "127.0.0.1:9/mine" in page and "theirs" not in page
    assert 29 * 60 < browser.session.get_expiry_age() <= 30 * 60
    assert any("used from" in r.getMessage() for r in caplog.records)

    second = Client()
    again = second.get(path_of(body["url"]))
    assert again.status_code == 410
    assert "already used" in again.content.decode()
    assert signed_in_as(second) is None


def test_it_refuses_expired_and_altered_links(operator: Client, merchant: Merchant) -> None:
    url = make_link(operator, merchant, expires_in_minutes=1).json()["url"]
    PortalLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    browser = Client()
    expired = browser.get(path_of(url))
    assert expired.status_code == 410 and "has expired" in expired.content.decode()
    assert signed_in_as(browser) is None

    url = make_link(operator, merchant).json()["url"]
    token = path_of(url).rstrip("/").rsplit("/", 1)[1]
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    tampered = browser.get(f"/portal/{altered}/")
    assert tampered.status_code == 404 and "not valid" in tampered.content.decode()
    assert signed_in_as(browser) is None
    assert PortalLink.objects.filter(used_at__isnull=False).count() == 0
    # The real one still works afterwards: a wrong guess spends nothing.
    assert browser.get(path_of(url)).status_code == 302


def test_it_refuses_bad_link_requests_and_makes_no_link(
    operator: Client, merchant: Merchant, settings: Any
) -> None:
    settings.PORTAL_FRAME_ANCESTORS = []
    cases = [
        ({"expires_in_minutes": 61}, "", "expires_in_minutes"),
        ({"expires_in_minutes": 0}, "", "expires_in_minutes"),
        ({"session_minutes": 0}, "", "session_minutes"),
        ({"embed": True}, "", "embed"),
        ({}, "?embed=1", "embed"),
        ({}, "?colour=red", "colour"),
    ]
    for body, query, field in cases:
        response = make_link(operator, merchant, query, **body)
        assert response.status_code == 400, (body, query, response.content)
        assert field in response.json()["error"]["fields"]
    missing = operator.post("/api/v1/merchants/mrc_nope/portal-links")
    assert missing.status_code == 404
    key = ApiKey.issue(merchant, "k")[1]
    refused = Client(headers={"authorization": f"Bearer {key}"}).post(
        f"/api/v1/merchants/{merchant.public_id}/portal-links"
    )
    assert refused.status_code == 403
    assert not PortalLink.objects.exists()


def test_it_rate_limits_making_and_opening_links(
    operator: Client, merchant: Merchant, settings: Any
) -> None:
    settings.PORTAL_LINK_RATE_LIMIT = (2, 60)
    settings.PORTAL_REDEEM_RATE_LIMIT = (2, 60)
    urls = [make_link(operator, merchant).json()["url"] for _ in range(2)]
    limited = make_link(operator, merchant)
    assert limited.status_code == 429 and limited["Retry-After"]
    assert PortalLink.objects.count() == 2
    browser = Client()
    assert browser.get("/portal/wrong-token/").status_code == 404
    assert browser.get(path_of(urls[0])).status_code == 302
    third = Client().get(path_of(urls[1]))
    assert third.status_code == 429 and third["Retry-After"]
    assert PortalLink.objects.get(pk=PortalLink.objects.order_by("pk").last().pk).used_at is None


def test_it_embeds_only_for_the_allowed_origins_with_cross_site_cookies(
    operator: Client, merchant: Merchant, settings: Any
) -> None:
    settings.PORTAL_FRAME_ANCESTORS = [BACK_OFFICE]
    url = make_link(operator, merchant, "?embed=1").json()["url"]
    browser = Client()
    opened = browser.get(path_of(url), secure=True)
    assert opened.status_code == 302
    for name in ("sessionid",):
        cookie = opened.cookies[name]
        assert cookie["samesite"] == "None" and cookie["secure"]
    page = browser.get("/webhooks/", secure=True)
    assert f"frame-ancestors {BACK_OFFICE}" in page["Content-Security-Policy"]
    assert "X-Frame-Options" not in page
    assert 'class="topbar"' not in page.content.decode()

    plain = Client()
    plain.get(path_of(make_link(operator, merchant).json()["url"]), secure=True)
    normal = plain.get("/webhooks/", secure=True)
    assert "frame-ancestors 'none'" in normal["Content-Security-Policy"]
    assert normal["X-Frame-Options"] == "DENY"
    assert 'class="topbar"' in normal.content.decode()


@pytest.mark.django_db(transaction=True)
def test_it_shows_the_embedded_dashboard_in_a_back_office_iframe(
    page: Any, live_server: Any, merchant: Merchant, settings: Any, redis_conn: Any
) -> None:
    parent = Receiver()
    try:
        origin = f"http://127.0.0.1:{parent.server.server_port}"
        settings.PORTAL_FRAME_ANCESTORS = [origin]
        operator_key = OperatorKey.issue("Back office")[1]
        api = Client(headers={"authorization": f"Bearer {operator_key}"})
        Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/in-frame")
        embedded = make_link(api, merchant, "?embed=1").json()["url"]
        plain = make_link(api, merchant).json()["url"]
        for path, url in (("/embedded", embedded), ("/plain", plain)):
            # The same site as the back office (127.0.0.1 on another port), so the browser
            # sends the session cookie to the frame without https's SameSite=None.
            frame_src = live_server.url.replace("localhost", "127.0.0.1") + path_of(url)
            html = f'<!doctype html><title>Back office</title><iframe src="{frame_src}"></iframe>'
            parent.routes[path] = Answer(
                body=html.encode(), headers={"content-type": "text/html; charset=utf-8"}
            )

        page.goto(f"{origin}/embedded")
        frame = page.frame_locator("iframe")
        frame.get_by_text("127.0.0.1:9/in-frame").first.wait_for()
        assert frame.locator("header.topbar").count() == 0

        # A link made without `embed` keeps the dashboard out of any frame.
        with page.expect_console_message(lambda m: "frame-ancestors" in m.text):
            page.goto(f"{origin}/plain")
    finally:
        parent.stop()


def test_it_takes_a_bare_post_and_signs_in_the_link_opener_not_an_earlier_user(
    operator: Client, merchant: Merchant, outsider: Any
) -> None:
    made = operator.post(f"/api/v1/merchants/{merchant.public_id}/portal-links")
    assert made.status_code == 201, made.content
    browser = Client()
    browser.force_login(outsider)
    assert browser.get(path_of(made.json()["url"])).status_code == 302
    assert signed_in_as(browser) == merchant


def test_it_prunes_links_a_day_after_they_expired_and_old_operator_keys(
    operator: Client, merchant: Merchant
) -> None:
    from accounts.models import OperatorRequestKey
    from operations.retention import prune_idempotency_keys

    make_link(operator, merchant)
    operator.post(
        "/api/v1/merchants",
        {"name": "Keyed"},
        content_type="application/json",
        headers={"Idempotency-Key": "k-1"},
    )
    now = timezone.now()
    assert prune_idempotency_keys(now) == 0
    assert PortalLink.objects.count() == 1 and OperatorRequestKey.objects.count() == 1
    later = now + timedelta(days=1, hours=1)
    assert prune_idempotency_keys(later, dry_run=True) == 2
    assert prune_idempotency_keys(later) == 2
    assert not PortalLink.objects.exists() and not OperatorRequestKey.objects.exists()
    assert Merchant.objects.filter(name="Keyed").exists()
