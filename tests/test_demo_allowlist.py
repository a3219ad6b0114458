"""`make run`'s demo allowance (issue 14, item 11): only the web server's own address and
port (where its inspector is) are opened, not every service on this machine."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant, User
from catalogue.models import EventType
from deliveries import emit
from deliveries.models import Event
from endpoints.models import Endpoint
from tests.conftest import Receiver
from tooling.models import Inspector
from webhooks_project import run


@pytest.fixture
def demo(settings: Any, receiver: Receiver) -> int:
    """The demo's settings, with `receiver` as the web server hosting the inspector."""
    env = run.local_env()
    settings.WEBHOOK_ALLOWED_NETWORKS = env["WEBHOOK_ALLOWED_NETWORKS"].split(",")
    settings.WEBHOOK_ALLOWED_PORTS = [receiver.server.server_port]
    return receiver.server.server_port


@pytest.fixture
def local_service() -> Any:
    """Another service on this machine (Redis, a database console ...)."""
    service = Receiver()
    yield service
    service.stop()


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def test_it_opens_only_the_web_servers_address_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBHOOK_ALLOWED_NETWORKS", "WEBHOOK_ALLOWED_PORTS", "WEB_BIND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORT", "8123")
    env = run.local_env()
    assert env["WEBHOOK_ALLOWED_NETWORKS"] == "127.0.0.1/32"
    assert env["WEBHOOK_ALLOWED_PORTS"] == "8123"
    monkeypatch.setenv("WEB_BIND", "[::1]:9000")
    assert run.demo_address("[::1]:9000") == ("::1/128", "9000")
    assert run.local_env()["WEBHOOK_ALLOWED_NETWORKS"] == "::1/128"


def test_it_refuses_a_webhook_to_another_local_port(
    demo: int, client: Client, local_service: Receiver, merchant: Merchant
) -> None:
    receipts = EventType.objects.get(name="receipts.update")
    form = {
        "event_types": [receipts.pk],
        "log_mode": "full",
        "payload_style": "full",
        "retry_policy": "exponential",
        "fixed_retries": 1,
        "fixed_cooldown_seconds": 7,
        "timeout_seconds": 30,
    }
    refused = client.post("/webhooks/add/", {**form, "url": local_service.url("/")})
    assert f"may only be used on port {demo}" in html.unescape(refused.content.decode())
    assert not Endpoint.objects.exists()
    allowed = client.post("/webhooks/add/", {**form, "url": f"http://127.0.0.1:{demo}/catch/x/"})
    assert allowed.status_code == 302
    # Nor the rest of 127.0.0.0/8 or ::1, on any port.
    other = client.post("/webhooks/add/", {**form, "url": f"http://127.0.0.2:{demo}/"})
    assert "not a public address" in html.unescape(other.content.decode())


def test_it_refuses_one_off_urls_and_test_sends_to_another_local_port(
    demo: int,
    merchant: Merchant,
    local_service: Receiver,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    client: Client,
) -> None:
    api = Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})
    one_off = api.post(
        "/api/v1/events",
        {"type": "receipts.update", "data": {}, "webhook_url": local_service.url("/")},
        content_type="application/json",
    )
    assert one_off.status_code == 400 and not Event.objects.exists()

    # Saved before the demo's settings: Send test still sends nothing there.
    stale = make_endpoint(local_service.url("/"))
    sent = client.post(f"/webhooks/{stale.public_id}/test/", headers={"X-Inline": "1"})
    assert f"may only be used on port {demo}" in html.unescape(sent.content.decode())
    via_api = api.post(f"/api/v1/webhooks/{stale.public_id}/test")
    assert via_api.status_code == 400
    assert local_service.requests == []

    # The inspector's own address and port work.
    inspector = Inspector.objects.create(merchant=merchant, name="Demo")
    ok = make_endpoint(receiver.url(inspector.path))
    assert api.post(f"/api/v1/webhooks/{ok.public_id}/test").json()["test"]["succeeded"]
    assert len(receiver.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_it_refuses_another_local_port_at_send_time_too(
    demo: int,
    merchant: Merchant,
    local_service: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    # Saved before the demo's rule applied (or a name that resolves here only now): the
    # worker refuses it when it connects, not only the form when it is saved.
    make_endpoint(local_service.url())
    event = emit(merchant, "receipts.update", {"n": 1})

    work(until=lambda: event.deliveries.get().status == "failed")

    delivery = event.deliveries.get()
    assert delivery.last_error == "blocked: port not allowed for this address"
    assert local_service.requests == []
