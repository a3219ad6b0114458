"""Hostile input: refused with a clear error and no change, or stored and shown escaped."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client

from accounts.models import ApiKey, Merchant, User
from catalogue.models import EventType
from deliveries.models import Event
from endpoints.models import Endpoint

XSS = '<script>alert("pwned")</script>'
SQL = "'; DROP TABLE endpoints_endpoint; --"


@pytest.fixture
def api(merchant: Merchant) -> Client:
    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'k')[1]}"})


@pytest.fixture
def dashboard(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def test_it_escapes_scripts_in_descriptions_and_urls_everywhere(
    api: Client, dashboard: Client, merchant: Merchant
) -> None:
    created = api.post(
        "/api/v1/webhooks",
        {"payload_url": f"http://127.0.0.1:9/x?q={XSS}", "description": XSS},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    endpoint = Endpoint.objects.get(merchant=merchant)
    Event.objects.create_event(merchant, "receipts.update", {"note": XSS})
    event = Event.objects.get()
    for path, shows_it in (
        ("/webhooks/", True),
        (f"/webhooks/{endpoint.public_id}/", True),
        (f"/webhooks/{endpoint.public_id}/edit/", True),
        ("/events/", False),
        (f"/events/{event.public_id}/", True),
    ):
        page = dashboard.get(path).content.decode()
        assert XSS not in page, path
        assert ("&lt;script&gt;" in page) == shows_it, path


def test_it_stores_sql_metacharacters_as_plain_text(api: Client, merchant: Merchant) -> None:
    response = api.post(
        "/api/v1/webhooks",
        {"payload_url": "http://127.0.0.1:9/x", "description": SQL},
        content_type="application/json",
    )
    assert response.status_code == 201
    assert Endpoint.objects.get(merchant=merchant).description == SQL
    listed = api.get("/api/v1/events", {"type": SQL})
    assert listed.status_code == 200 and listed.json()["events"] == []
    assert api.get("/api/v1/deliveries", {"webhook": SQL}).json()["deliveries"] == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM endpoints_endpoint")
        assert cursor.fetchone()[0] == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "Only http:// and https://"),
        ("gopher://127.0.0.1/", "Only http:// and https://"),
        ("not a url", "Enter a valid URL."),
        ("http://169.254.169.254/latest/meta-data/", "not a public address"),
        ("http://127.0.0.1:9/" + "a" * 2050, "2048"),
    ],
)
def test_it_shows_the_url_error_on_the_form_and_saves_nothing(
    dashboard: Client, merchant: Merchant, url: str, message: str
) -> None:
    event_type = EventType.objects.get(name="receipts.update")
    response = dashboard.post(
        "/webhooks/add/",
        {
            "url": url,
            "event_types": [event_type.pk],
            "log_mode": "full",
            "payload_style": "full",
            "retry_policy": "exponential",
            "fixed_retries": 1,
            "fixed_cooldown_seconds": 7,
            "timeout_seconds": 30,
        },
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Endpoint.objects.filter(merchant=merchant).exists()


def test_it_refuses_an_event_that_is_not_json(api: Client, merchant: Merchant) -> None:
    response = api.post("/api/v1/events", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]
    form = api.post(
        "/api/v1/events",
        "type=receipts.update&data=%7Bnope",
        content_type="application/x-www-form-urlencoded",
    )
    assert form.status_code == 400 and "data" in form.json()["error"]["fields"]
    assert not Event.objects.exists()


def test_it_refuses_huge_and_odd_page_parameters(api: Client) -> None:
    for query in ("limit=1000000", "limit=-1", "limit=x", "after=-5", "before=abc"):
        response = api.get(f"/api/v1/events?{query}")
        assert response.status_code == 400, query
        assert json.loads(response.content)["error"]["fields"], query
