"""The request inspector: real deliveries to /catch/<token>/ on a live server, and its pages."""

from __future__ import annotations

import html
import io
import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import Merchant, User
from catalogue.models import EventType
from deliveries import emit
from deliveries.engine import disable_endpoint, send_test
from deliveries.models import Delivery
from endpoints.models import Endpoint
from lib import http
from tests.conftest import Receiver
from tooling import inspector as inspection
from tooling.models import Inspector, InspectorRequest

KIB = 1024


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def inspector(merchant: Merchant) -> Inspector:
    return Inspector.objects.create(merchant=merchant, name="Till try-out")


@pytest.fixture
def catch_url(live_server: Any, inspector: Inspector) -> str:
    """The inspector's URL on a real HTTP server (pytest-django's live server)."""
    return live_server.url.replace("localhost", "127.0.0.1") + inspector.path


def page_of(client: Client, inspector: Inspector, query: str = "") -> str:
    response = client.get(f"/inspector/{inspector.public_id}/{query}")
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def flashes(client: Client, response: Any) -> list[str]:
    while response.status_code in (301, 302):
        response = client.get(response["Location"])
    page = response.content.decode()
    return [
        html.unescape(m)
        for m in re.findall(r'<div class="message [^"]+" role="\w+">(.*?)</div>', page)
    ]


def done() -> bool:
    return not Delivery.objects.filter(status__in=["pending", "delivering"]).exists()


# --- signatures, with real deliveries over HTTP ------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_records_a_real_signed_delivery_as_signature_valid(
    client: Client,
    inspector: Inspector,
    catch_url: str,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    endpoint = make_endpoint(catch_url, types=("inventory_levels.update",))
    sample = EventType.objects.get(name="inventory_levels.update").sample
    event = emit(inspector.merchant, "inventory_levels.update", sample)
    work(until=done)

    delivery = Delivery.objects.get(event=event)
    assert (delivery.status, delivery.last_status_code) == ("succeeded", 200)
    page = page_of(client, inspector)
    assert "Signature valid" in page
    assert f"Verified with the secret of webhook {endpoint.public_id}." in page
    assert f'POST</code> <code class="break">{inspector.path}' in page
    assert f'"id": "{event.public_id}"' in page  # the body, pretty-printed
    assert '"product_code": "10003"' in page
    assert "webhook-signature" in page and "answered 200" in page


@pytest.mark.django_db(transaction=True)
def test_it_shows_a_tampered_body_as_signature_invalid(
    client: Client,
    inspector: Inspector,
    catch_url: str,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
) -> None:
    # A real signed delivery, caught by a receiver, then replayed to the inspector twice:
    # as it was, and with one character of the body changed.
    # Only webhooks pointing at the inspector are tried: this one shares the secret.
    pos = make_endpoint(receiver.url("/pos"))
    make_endpoint(catch_url, secret=pos.secret)
    send_test(pos)
    sent = receiver.requests[-1]
    headers = {k: v for k, v in sent.headers.items() if k.startswith("webhook-")}
    headers["content-type"] = "application/json"
    assert http.post(catch_url, sent.body, headers, timeout=10).status == 200
    tampered = sent.body.replace(b"This is a test", b"This is a fest")
    assert tampered != sent.body
    assert http.post(catch_url, tampered, headers, timeout=10).status == 200

    newest, oldest = InspectorRequest.objects.order_by("-id")
    assert (oldest.signature, newest.signature) == ("valid", "invalid")
    page = page_of(client, inspector)
    assert page.count("Signature invalid") == 1 and page.count("Signature valid") == 1
    assert "No secret of your enabled webhooks pointing here verifies it" in page
    assert "This is a fest" in page


def test_it_says_not_signed_and_keeps_any_method_path_and_query(
    client: Client, inspector: Inspector
) -> None:
    answer = Client().put(
        f"{inspector.path}orders/7?debug=1",
        b"<order>7</order>",
        content_type="application/xml",
        headers={"authorization": "Basic c2hvcDpodW50ZXIy"},
    )
    assert answer.status_code == 200
    assert answer.json() == {"received": True}
    page = page_of(client, inspector)
    assert "Not signed" in page
    assert f"{inspector.path}orders/7?debug=1" in page
    assert "<order>7</order>" in page
    assert "Basic ****" in page and "c2hvcDpodW50ZXIy" not in page
    assert Client().get(inspector.path.rstrip("/")).status_code == 200  # no slash, no redirect
    assert InspectorRequest.objects.count() == 2


def test_it_calls_incomplete_signature_headers_invalid(
    client: Client, inspector: Inspector
) -> None:
    Client().post(
        inspector.path, b"{}", content_type="application/json", headers={"webhook-id": "x"}
    )
    stored = InspectorRequest.objects.get()
    assert stored.signature == "invalid"
    assert "no webhook-timestamp, webhook-signature header" in stored.signature_detail


def test_it_refuses_bodies_over_256_kib_with_413(inspector: Inspector) -> None:
    over = Client().post(inspector.path, b"x" * (256 * KIB + 1), content_type="text/plain")
    assert over.status_code == 413
    assert "larger than 256 KiB" in over.json()["error"]
    assert not InspectorRequest.objects.exists()
    at_limit = Client().post(inspector.path, b"x" * (256 * KIB), content_type="text/plain")
    assert at_limit.status_code == 200
    assert InspectorRequest.objects.get().size == 256 * KIB


def test_it_keeps_the_latest_100_requests(client: Client, inspector: Inspector) -> None:
    for n in range(1, 106):
        Client().post(f"{inspector.path}?n={n}", b"{}", content_type="application/json")
    kept = list(inspector.requests.order_by("id").values_list("path", flat=True))
    assert len(kept) == 100
    assert kept[0].endswith("?n=6") and kept[-1].endswith("?n=105")
    # Newest first, 20 a page.
    page = page_of(client, inspector)
    assert page.index("?n=105") < page.index("?n=104")
    assert "?n=85<" not in page and "Older" in page


def test_it_makes_unguessable_tokens_and_answers_404_for_unknown_ones(
    merchant: Merchant, inspector: Inspector
) -> None:
    other = Inspector.objects.create(merchant=merchant, name="Second")
    assert len(inspector.token) >= 43 and inspector.token != other.token
    assert inspector.token not in inspector.public_id
    unknown = Client().post("/catch/not-a-real-token-at-all/", b"{}", content_type="text/plain")
    assert unknown.status_code == 404
    assert not InspectorRequest.objects.exists()


# --- answers: rehearsing failures with real deliveries ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_answers_500_and_410_to_rehearse_failures(
    client: Client,
    inspector: Inspector,
    catch_url: str,
    make_endpoint: Callable[..., Endpoint],
) -> None:
    endpoint = make_endpoint(catch_url)
    response = client.post(
        f"/inspector/{inspector.public_id}/answer/", {"answer": "500", "slow_seconds": 35}
    )
    assert flashes(client, response) == ["The inspector now answers 500 Internal Server Error."]
    failed = send_test(endpoint)
    assert (failed.last_status_code, failed.status) == (500, "pending")  # to be retried

    client.post(f"/inspector/{inspector.public_id}/answer/", {"answer": "410", "slow_seconds": 35})
    send_test(endpoint)
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled
    assert endpoint.disabled_reason == Endpoint.DisabledReason.GONE
    assert list(inspector.requests.values_list("answered", flat=True)) == ["410", "500"]


@pytest.mark.django_db(transaction=True)
def test_it_answers_slowly_past_the_senders_deadline(
    client: Client,
    inspector: Inspector,
    catch_url: str,
    make_endpoint: Callable[..., Endpoint],
) -> None:
    assert (
        client.post(
            f"/inspector/{inspector.public_id}/answer/", {"answer": "slow", "slow_seconds": 36}
        ).status_code
        == 400
    )  # 35 seconds at most
    response = client.post(
        f"/inspector/{inspector.public_id}/answer/", {"answer": "slow", "slow_seconds": 2}
    )
    assert flashes(client, response) == ["The inspector now answers 200 OK after 2 seconds."]
    endpoint = make_endpoint(catch_url, timeout_seconds=1)
    delivery = send_test(endpoint)
    assert delivery.last_status_code == 408
    assert "timed out after 1 s" in delivery.last_error
    assert inspector.requests.get().answered == "slow"  # recorded before the wait


@pytest.mark.django_db(transaction=True)
def test_it_answers_503_beyond_two_slow_answers_at_once(
    client: Client, inspector: Inspector, catch_url: str
) -> None:
    inspector.answer, inspector.slow_seconds = Inspector.Answer.SLOW, 2
    inspector.save()
    # The live server outlives each test: let slow answers of earlier tests finish first.
    for _ in range(inspection.SLOW_SLOTS):
        assert inspection._SLOW_SLOTS.acquire(timeout=40)
    for _ in range(inspection.SLOW_SLOTS):
        inspection.release_slow_slot()
    with ThreadPoolExecutor(3) as pool:
        statuses = sorted(
            pool.map(
                lambda n: http.post(f"{catch_url}?n={n}", b"{}", {}, timeout=10).status, [1, 2, 3]
            )
        )
    # Every request is recorded; the slow answers beyond the per-process cap come at once.
    assert statuses == [200, 200, 503]
    assert inspector.requests.count() == 3


# --- the dashboard ------------------------------------------------------------------------------


def test_it_explains_inspectors_and_creates_one(client: Client, merchant: Merchant) -> None:
    page = client.get("/inspector/").content.decode()
    assert "No inspectors yet" in page
    response = client.post("/inspector/create/", {"name": ""})
    inspector = Inspector.objects.get(merchant=merchant)
    assert inspector.name == "Inspector 1"
    assert flashes(client, response) == [
        "Inspector “Inspector 1” created. Send anything to its URL to see it here."
    ]
    page = page_of(client, inspector)
    assert f"http://testserver/catch/{inspector.token}/" in page
    assert "No requests yet" in page
    assert "Inspector 1" in client.get("/inspector/").content.decode()

    Inspector.objects.bulk_create(
        Inspector(merchant=merchant, name=f"Spare {n}") for n in range(2, 21)
    )
    refused = client.post("/inspector/create/", {"name": "One too many"})
    assert refused.status_code == 400
    assert "You have 20 inspectors, the most your account allows (20)" in html.unescape(
        refused.content.decode()
    )
    assert Inspector.objects.filter(merchant=merchant).count() == 20


def test_it_uses_an_inspector_as_a_webhook_url(
    client: Client, inspector: Inspector, settings: Any
) -> None:
    response = client.post(
        f"/inspector/{inspector.public_id}/use-as-webhook/", headers={"host": "127.0.0.1:8000"}
    )
    endpoint = Endpoint.objects.get()
    assert endpoint.url == f"http://127.0.0.1:8000/catch/{inspector.token}/"
    assert endpoint.merchant == inspector.merchant and endpoint.is_enabled
    assert not endpoint.event_types.exists()  # no type picked: every type, later ones too
    assert response["Location"] == f"/webhooks/{endpoint.public_id}/"
    assert "Send it a test" in flashes(client, response)[0]
    assert endpoint.public_id in page_of(client, inspector)  # "Webhooks sending here"

    # Where the operator requires https, a plain-http inspector URL is refused, not saved.
    settings.WEBHOOK_REQUIRE_HTTPS = True
    response = client.post(
        f"/inspector/{inspector.public_id}/use-as-webhook/", headers={"host": "127.0.0.1:8000"}
    )
    assert "cannot be a webhook URL here" in flashes(client, response)[0]
    assert Endpoint.objects.count() == 1


def test_it_clears_and_deletes_an_inspector_after_confirming(
    client: Client, inspector: Inspector
) -> None:
    Client().post(inspector.path, b"{}", content_type="application/json")
    confirm = client.get(f"/inspector/{inspector.public_id}/clear/confirm/").content.decode()
    assert "This cannot be undone" in confirm
    response = client.post(f"/inspector/{inspector.public_id}/clear/")
    assert flashes(client, response) == ["1 request deleted."]
    assert not InspectorRequest.objects.exists()

    confirm = client.get(f"/inspector/{inspector.public_id}/delete/confirm/").content.decode()
    assert "answers 404 from now on" in confirm
    assert client.get(f"/inspector/{inspector.public_id}/delete/").status_code == 405
    response = client.post(f"/inspector/{inspector.public_id}/delete/")
    assert flashes(client, response) == [
        "Inspector “Till try-out” deleted. Its URL now answers 404."
    ]
    assert Client().post(inspector.path, b"{}", content_type="text/plain").status_code == 404


def test_it_shows_inspectors_only_to_their_merchant(
    outsider: User, inspector: Inspector, outsider_merchant: Merchant
) -> None:
    Client().post(inspector.path, b'{"secret_order": 1}', content_type="application/json")
    theirs = Inspector.objects.create(merchant=outsider_merchant, name="Bakery inspector")
    client = Client()
    client.force_login(outsider)
    listing = client.get("/inspector/").content.decode()
    assert "Bakery inspector" in listing and "Till try-out" not in listing
    base = f"/inspector/{inspector.public_id}/"
    for url in (base, f"{base}clear/confirm/", f"{base}delete/confirm/"):
        assert client.get(url).status_code == 404
    for url in (f"{base}answer/", f"{base}use-as-webhook/", f"{base}clear/", f"{base}delete/"):
        assert client.post(url, {"answer": "500", "slow_seconds": 1}).status_code == 404
    inspector.refresh_from_db()
    assert inspector.answer == "200" and inspector.requests.count() == 1
    assert not Endpoint.objects.exists()
    assert client.get(f"/inspector/{theirs.public_id}/").status_code == 200
    assert Client().get(base).status_code == 302  # to the login page


# --- the demo of `make run` ---------------------------------------------------------------------


@pytest.fixture
def demo_env(
    live_server: Any, monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path
) -> None:
    """`make run`'s setting: the web server's PORT, which seed_demo points the demo at."""
    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("PORT", live_server.url.rsplit(":", 1)[1])


@pytest.mark.django_db(transaction=True)
def test_it_points_the_demo_webhooks_at_an_inspector_that_receives_them(
    demo_env: None, work: Callable[..., None]
) -> None:
    call_command("seed_demo", stdout=io.StringIO())
    demo = User.objects.get(username="demo").merchant
    inspector = Inspector.objects.get(merchant=demo)
    endpoints = Endpoint.objects.filter(merchant=demo)
    assert {e.url for e in endpoints} == {
        f"http://127.0.0.1:{os.environ['PORT']}/catch/{inspector.token}/"
    }
    assert all(e.is_enabled for e in endpoints)
    work(until=done)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    received = list(inspector.requests.all())
    assert len(received) == Delivery.objects.count() == 4
    assert {r.signature for r in received} == {"valid"}
    assert {json.loads(r.body)["type"] for r in received} == {
        "receipts.update",
        "inventory_levels.update",
    }


def test_it_moves_an_old_demo_onto_an_inspector(
    db: None, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A demo seeded before inspectors: disabled webhooks with a placeholder URL.
    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("PORT", "8000")
    demo = Merchant.objects.create(name="Demo Coffee Shop")
    User.objects.create_user("demo", password="x", merchant=demo)
    old = Endpoint.objects.create(merchant=demo, url="http://127.0.0.1:9/demo/sales")
    disable_endpoint(old)
    own = Endpoint.objects.create(merchant=demo, url="https://example.com/mine")

    call_command("seed_demo", stdout=io.StringIO())

    inspector = Inspector.objects.get(merchant=demo)
    old.refresh_from_db()
    own.refresh_from_db()
    assert (old.url, old.is_enabled) == (f"http://127.0.0.1:8000/catch/{inspector.token}/", True)
    assert own.url == "https://example.com/mine"  # what the merchant typed stays
