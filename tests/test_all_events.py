"""myPOS's own create call works (issue 15, item 11).

The document's example secret `myrandomgeneratedsecret` is 23 bytes: accepted (16 at least),
while generated secrets stay 32 bytes. A webhook created with `payload_url` only subscribes
to nothing, which means every event (Svix's convention): it is delivered every type, shown
as "All events" in the dashboard, and keeps `events: []` in myPOS's shape.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant, User
from deliveries import emit
from deliveries.engine import disable_endpoint
from deliveries.models import Delivery
from endpoints.models import Endpoint
from lib import http, signing
from tests.conftest import Receiver

FORM = "application/x-www-form-urlencoded"
# The curl example's -d of myPOS's documentation, byte for byte.
MYPOS_CREATE = (
    "payload_url=https%3A%2F%2Fmywebsite.com%2Fwebhook-callback&secret=myrandomgeneratedsecret"
)


@pytest.fixture(autouse=True)
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DNS here: the seed's host resolves to a public address that is never contacted."""

    def resolve(host: str, port: int) -> list[Any]:
        if host.endswith("mywebsite.com"):
            return [ipaddress.ip_address("93.184.215.14")]
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(http, "resolve", resolve)


@pytest.fixture
def api(merchant: Merchant) -> Client:
    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})


def test_it_accepts_the_mypos_create_call_as_printed(api: Client) -> None:
    response = api.post("/api/v1/webhooks", MYPOS_CREATE, content_type=FORM)
    assert response.status_code == 201, response.content
    webhook = response.json()["webhook"]
    assert webhook["payload_url"] == "https://mywebsite.com/webhook-callback"
    assert webhook["secret"] == "myrandomgeneratedsecret"
    assert webhook["events"] == []  # myPOS's shape: no events listed

    # Read back: still `events: []`, so an integrator's code sees what it sent.
    detail = api.get(f"/api/v1/webhooks/{webhook['id']}").json()["webhook"]
    assert detail["events"] == []


def test_it_refuses_secrets_under_16_bytes_and_generates_32(api: Client) -> None:
    response = api.post(
        "/api/v1/webhooks",
        "payload_url=https%3A%2F%2Fmywebsite.com%2Fx&secret=fifteen-bytes!!",
        content_type=FORM,
    )
    assert response.status_code == 400
    assert "16 bytes" in response.json()["error"]["fields"]["secret"]

    generated = api.post(
        "/api/v1/webhooks", "payload_url=https%3A%2F%2Fmywebsite.com%2Fy", content_type=FORM
    ).json()["webhook"]["secret"]
    assert len(base64.b64decode(generated.removeprefix(signing.SECRET_PREFIX))) == 32


@pytest.mark.django_db(transaction=True)
def test_it_delivers_every_event_to_a_webhook_with_no_events(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    everything = make_endpoint(receiver.url("/all"), types=())
    make_endpoint(receiver.url("/receipts"), types=("receipts.update",))
    disabled = make_endpoint(receiver.url("/off"), types=())
    disable_endpoint(disabled)

    emit(merchant, "receipts.update", {"total": "9.99"})
    emit(merchant, "inventory_levels.update", {"inventory_levels": []})
    work(until=lambda: Delivery.objects.filter(status="succeeded").count() == 3)

    paths = sorted(r.path for r in receiver.requests)
    assert paths == ["/all", "/all", "/receipts"]
    assert Delivery.objects.filter(endpoint=everything).count() == 2


def test_it_shows_all_events_in_the_dashboard(
    client: Client, owner: User, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("https://mywebsite.com/webhook-callback", types=())
    client.force_login(owner)
    assert "All events" in client.get("/webhooks/").content.decode()
    assert "All events" in client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    # The list's event filter still finds it: it gets every type.
    listing = client.get("/webhooks/?event=receipts.update").content.decode()
    assert endpoint.public_id in listing


def test_it_saves_a_dashboard_webhook_with_no_events_as_all_events(
    client: Client, owner: User
) -> None:
    client.force_login(owner)
    response = client.post(
        "/webhooks/add/",
        {
            "url": "https://mywebsite.com/webhook-callback",
            "secret": "myrandomgeneratedsecret",
            "log_mode": "full",
            "payload_style": "full",
            "retry_policy": "exponential",
            "fixed_retries": 1,
            "fixed_cooldown_seconds": 7,
            "timeout_seconds": 30,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = Endpoint.objects.get()
    assert not endpoint.event_types.exists()
    assert endpoint.secret == "myrandomgeneratedsecret"
