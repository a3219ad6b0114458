"""The Event catalogue, its receiver snippets (run for real), and tests with real event data."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant, User
from catalogue.models import Category, EventType
from deliveries import emit
from deliveries.engine import send_test
from deliveries.models import Event
from endpoints.models import Endpoint
from tests.conftest import Receiver


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def catalogue_page(client: Client) -> str:
    response = client.get("/catalogue/")
    assert response.status_code == 200
    return response.content.decode()


def snippet(page: str, key: str, secret: str) -> str:
    """A snippet as a merchant copies it from the page, with their secret filled in."""
    match = re.search(rf'<pre [^>]*id="snippet-{key}"[^>]*>(.*?)</pre>', page, re.S)
    assert match, f"no {key} snippet on the page"
    code = html.unescape(match.group(1))
    assert code.count("whsec_...") == 1
    return code.replace("whsec_...", secret)


@pytest.fixture
def delivered(receiver: Receiver, make_endpoint: Callable[..., Endpoint]) -> tuple[Any, str]:
    """A real signed test delivery, as a receiver got it, and the secret that signed it."""
    endpoint = make_endpoint(receiver.url("/pos"))
    send_test(endpoint)
    return receiver.requests[-1], endpoint.secret


# --- the catalogue ------------------------------------------------------------------------------


def test_it_lists_every_event_type_by_category_with_a_sample_body(client: Client) -> None:
    page = catalogue_page(client)
    for event_type in EventType.objects.filter(is_active=True):
        assert f"<code>{event_type.name}</code>" in page
    for category in Category.objects.filter(event_types__isnull=False).distinct():
        assert f'id="category-{category.slug}">{category.name}</h2>' in page
    sample = re.search(r'id="sample-inventory_levelsupdate"[^>]*>(.*?)</pre>', page, re.S)
    assert sample, "no sample for inventory_levels.update"
    body = json.loads(html.unescape(sample.group(1)))
    assert body["type"] == "inventory_levels.update"
    # SalesPlay's own example, from its webhook guide.
    assert body["data"]["inventory_levels"] == [
        {
            "product_id": "QWhxek54UkQ3eTArdml2d1NkSDVnUT09",
            "shop_id": "bHF2M2pMakkzTVZ0NFh2SE1WNnNoUT09",
            "product_code": "10003",
            "in_stock": 10,
        }
    ]
    assert set(body) == {"id", "type", "created_at", "merchant_id", "sequence", "data"}


def test_it_needs_a_login(db: None) -> None:
    assert Client().get("/catalogue/").status_code == 302


# --- the receiver snippets, run against real deliveries --------------------------------------


def test_its_python_snippet_verifies_a_real_delivery_and_rejects_a_tampered_one(
    client: Client, delivered: tuple[Any, str]
) -> None:
    sent, secret = delivered
    namespace: dict[str, Any] = {}
    exec(snippet(catalogue_page(client), "python", secret), namespace)
    verify = namespace["verify"]
    assert verify(sent.body, sent.headers) is True
    assert verify(sent.body.replace(b"test", b"fest"), sent.headers) is False
    assert verify(sent.body, {**sent.headers, "webhook-timestamp": "1000000000"}) is False


@pytest.mark.skipif(
    not shutil.which("node"), reason="needs node: `make test` installs it (apt nodejs)"
)
def test_its_node_snippet_verifies_a_real_delivery_and_rejects_a_tampered_one(
    client: Client, delivered: tuple[Any, str], tmp_path: Path
) -> None:
    sent, secret = delivered
    (tmp_path / "verify.js").write_text(snippet(catalogue_page(client), "node", secret))
    (tmp_path / "body").write_bytes(sent.body)
    (tmp_path / "tampered").write_bytes(sent.body.replace(b"test", b"fest"))
    (tmp_path / "headers.json").write_text(json.dumps(sent.headers))
    check = (
        'const { verify } = require("./verify.js"); const fs = require("fs");'
        'const headers = JSON.parse(fs.readFileSync("headers.json"));'
        'console.log(verify(fs.readFileSync("body"), headers),'
        ' verify(fs.readFileSync("tampered"), headers));'
    )
    result = subprocess.run(
        ["node", "-e", check], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "true false", result.stderr


@pytest.mark.skipif(
    not shutil.which("php"), reason="needs php: `make test` installs it (apt php-cli)"
)
def test_its_php_snippet_verifies_a_real_delivery(
    client: Client, delivered: tuple[Any, str], tmp_path: Path
) -> None:
    sent, secret = delivered
    code = snippet(catalogue_page(client), "php", secret)
    library = code[: code.index('$body = file_get_contents("php://input");')]
    (tmp_path / "verify.php").write_text(library)
    (tmp_path / "body").write_bytes(sent.body)
    (tmp_path / "headers.json").write_text(json.dumps(sent.headers))
    check = (
        'require "verify.php"; $h = json_decode(file_get_contents("headers.json"), true);'
        '$b = file_get_contents("body");'
        'echo json_encode([verify_webhook($b, $h), verify_webhook($b . " ", $h)]);'
    )
    result = subprocess.run(
        ["php", "-r", check], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "[true,false]", result.stderr


def test_its_php_snippet_is_shown(client: Client) -> None:
    # Beside the run above, which needs php: the shape is checked wherever the suite runs.
    code = snippet(catalogue_page(client), "php", "whsec_x")
    assert 'hash_hmac("sha256", "$id.$timestamp.$body", $key, true)' in code
    assert "hash_equals($expected, $candidate)" in code


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "curl", "openssl", "base64", "od")),
    reason="needs bash, curl, openssl, base64 and od",
)
def test_its_curl_snippet_sends_a_request_signed_like_ours(
    client: Client, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    from lib import signing

    secret = make_endpoint(receiver.url("/pos")).secret
    script = snippet(catalogue_page(client), "curl", secret).replace(
        "https://example.com/webhooks/pos", receiver.url("/pos")
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    [got] = receiver.requests
    assert json.loads(got.body)["type"] == "webhook.test"
    assert signing.verify(
        secret,
        got.headers["webhook-id"],
        got.headers["webhook-timestamp"],
        got.body,
        got.headers["webhook-signature"],
    )


# --- "Send test" with the merchant's latest real event of a type ------------------------------


def test_it_sends_a_test_with_the_latest_real_event_of_a_type(
    client: Client,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
) -> None:
    endpoint = make_endpoint(receiver.url("/pos"), types=("receipts.update", "products.update"))
    page = client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert "Test with the data of your latest" not in page  # no real event yet
    Event.objects.create_event(merchant, "receipts.update", {"receipt_no": "R-1"})
    Event.objects.create_event(merchant, "receipts.update", {"receipt_no": "R-2", "total": "9"})
    Event.objects.create_event(merchant, "customers.update", {"customer": "not subscribed"})

    page = client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    options = re.findall(r'<option value="([^"]+)">[^<]+ event</option>', page)
    assert options == ["receipts.update"]

    response = client.post(
        f"/webhooks/{endpoint.public_id}/test/",
        {"event_type": "receipts.update"},
        headers={"x-inline": "1"},
    )
    assert "Test delivered" in response.content.decode()
    assert "Sent with the data of your latest" in response.content.decode()
    body = receiver.requests[-1].json()
    assert body["type"] == "webhook.test"
    assert body["data"] == {"receipt_no": "R-2", "total": "9"}

    response = client.post(f"/webhooks/{endpoint.public_id}/test/", {"event_type": "nope.update"})
    response = client.get(response["Location"])
    assert "You have no nope.update event yet" in html.unescape(response.content.decode())
    assert len(receiver.requests) == 1


def test_its_api_sends_a_test_with_the_latest_real_event_of_a_type(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(receiver.url("/pos"))
    api = Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'CI')[1]}"})
    emitted = emit(merchant, "inventory_levels.update", {"inventory_levels": [{"in_stock": 3}]})
    url = f"/api/v1/webhooks/{endpoint.public_id}/test"

    response = api.post(url, {"event_type": "inventory_levels.update"}, "application/json")
    assert response.status_code == 200, response.content
    assert response.json()["test"]["succeeded"] is True
    assert receiver.requests[-1].json()["data"] == emitted.data

    missing = api.post(url, {"event_type": "products.update"}, "application/json")
    assert missing.status_code == 400
    assert missing.json()["error"]["fields"] == {
        "event_type": "You have no products.update event yet: send the test with sample data."
    }
    assert api.post(url).status_code == 200  # no body: the sample test, as before
    assert len(receiver.requests) == 2
