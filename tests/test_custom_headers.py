"""Custom headers: name/value pairs sent with every delivery to a webhook.

End to end with real workers and a real receiver that checks which headers arrive; then the
rules (lib/custom_headers.py), storage encrypted at rest, the API, the dashboard and the admin.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from standardwebhooks.webhooks import Webhook

from accounts.models import Merchant, User
from deliveries import emit
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import Endpoint
from lib.custom_headers import HeaderError, keep_masked, mask_value, validate_headers
from tests.conftest import Answer, Receiver

pytestmark = pytest.mark.django_db(transaction=True)

API_KEY = "rcv_live_5f2b7c9d0e1a4b3c"


def all_done() -> bool:
    return not Delivery.objects.filter(status__in=["pending", "delivering"]).exists()


def test_it_sends_the_custom_headers_with_every_delivery(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
) -> None:
    endpoint = make_endpoint(receiver.url("/keyed"))
    endpoint.headers = {"X-Api-Key": API_KEY, "X-Outlet": "Main"}
    endpoint.save()
    plain = make_endpoint(receiver.url("/plain"))
    event = emit(merchant, "receipts.update", {"receipt_no": "R-1"})
    work(until=all_done)

    keyed = [r for r in receiver.requests if r.path == "/keyed"]
    assert len(keyed) == 1
    assert keyed[0].headers["x-api-key"] == API_KEY
    assert keyed[0].headers["x-outlet"] == "Main"
    # The signature still verifies, and our own headers are untouched.
    assert Webhook(endpoint.secret).verify(keyed[0].body, keyed[0].headers)["id"] == event.public_id
    assert keyed[0].headers["content-type"] == "application/json"
    other = [r for r in receiver.requests if r.path == "/plain"]
    assert "x-api-key" not in other[0].headers
    assert Webhook(plain.secret).verify(other[0].body, other[0].headers)

    # The attempt log keeps the names but never the values.
    logged = DeliveryAttempt.objects.get(delivery__endpoint=endpoint).request_headers
    assert logged["X-Api-Key"] == "****"
    assert logged["X-Outlet"] == "****"
    assert API_KEY not in json.dumps(list(DeliveryAttempt.objects.values("request_headers")))


def test_it_sends_them_again_on_a_retry(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
    settings: Any,
) -> None:
    settings.WEBHOOK_RETRY_BASE_SECONDS = 1
    endpoint = make_endpoint(receiver.url("/keyed"))
    endpoint.headers = {"Authorization": "Bearer " + API_KEY}
    endpoint.save()
    receiver.answers = [Answer(503)]
    emit(merchant, "receipts.update", {"receipt_no": "R-2"})
    work(until=all_done)
    assert [r.headers["authorization"] for r in receiver.requests] == ["Bearer " + API_KEY] * 2
    assert Delivery.objects.get().status == Delivery.Status.SUCCEEDED


def test_it_stores_the_values_encrypted(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("https://example.com/hook")
    endpoint.headers = {"X-Api-Key": API_KEY}
    endpoint.save()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT custom_headers FROM {Endpoint._meta.db_table} WHERE id = %s", [endpoint.pk]
        )
        raw = cursor.fetchone()[0]
    assert raw.startswith("fernet:")
    assert API_KEY not in raw
    assert Endpoint.objects.get(pk=endpoint.pk).headers == {"X-Api-Key": API_KEY}


# --- the rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ("X-Key: 1", "Headers are a JSON object"),
        ({"X Key": "1"}, "'X Key' is not a valid HTTP header name"),
        ({"X-Kéy": "1"}, "is not a valid HTTP header name"),
        ({"": "1"}, "is not a valid HTTP header name"),
        ({"webhook-signature": "v1,x"}, "Header webhook-signature is set by the sender"),
        ({"Webhook-Id": "1"}, "Header Webhook-Id is set by the sender"),
        ({"webhook-timestamp": "1"}, "set by the sender"),
        ({"Content-Type": "text/plain"}, "Header Content-Type is set by the sender"),
        ({"content-length": "1"}, "set by the sender"),
        ({"Host": "evil.example"}, "Header Host is set by the sender"),
        ({"User-Agent": "x"}, "set by the sender"),
        ({"Transfer-Encoding": "chunked"}, "set by the sender"),
        ({"Connection": "close"}, "set by the sender"),
        ({"Keep-Alive": "1"}, "set by the sender"),
        ({"TE": "trailers"}, "set by the sender"),
        ({"Upgrade": "h2c"}, "set by the sender"),
        ({"Proxy-Authorization": "x"}, "set by the sender"),
        ({"Trailer": "x"}, "set by the sender"),
        ({"X-A": "1\r\nX-Injected: 1"}, "The value of header X-A may hold only printable"),
        ({"X-A": "nul\x00"}, "may hold only printable"),
        ({"X-A": 5}, "The value of header X-A must be a string"),
        ({"X-A": "x" * 1001}, "longer than 1000 characters"),
        ([{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}], "X-a is given twice"),
        ({f"X-{n}": "v" for n in range(21)}, "At most 20 custom headers, got 21"),
        ([{"name": "X-A"}], 'Each header is an object {"name": ..., "value": ...}'),
    ],
)
def test_it_refuses_bad_headers_naming_them(headers: Any, message: str) -> None:
    with pytest.raises(HeaderError) as info:
        validate_headers(headers)
    assert message.lower() in str(info.value).lower()


def test_it_accepts_up_to_twenty_headers_in_either_shape() -> None:
    twenty = {f"X-{n}": f"v{n}" for n in range(20)}
    assert validate_headers(twenty) == twenty
    assert validate_headers([{"name": "X-A", "value": " 1 "}]) == {"X-A": "1"}
    assert validate_headers(None) == {}


def test_it_masks_values_and_keeps_a_value_sent_back_masked() -> None:
    assert mask_value(API_KEY) == "****4b3c"
    assert mask_value("short") == "****"
    current = {"X-Api-Key": API_KEY, "X-Outlet": "Main"}
    submitted = {"X-Api-Key": "****4b3c", "X-Outlet": "Airport", "X-New": "****"}
    assert keep_masked(submitted, current) == {
        "X-Api-Key": API_KEY,
        "X-Outlet": "Airport",
        "X-New": "****",
    }


# --- the API --------------------------------------------------------------------------------

URL = "http://127.0.0.1:9/hook"


@pytest.fixture
def http_allowed(settings: Any) -> None:
    settings.WEBHOOK_REQUIRE_HTTPS = False


def test_it_takes_headers_on_create_and_shows_them_masked(
    api: Client, merchant: Merchant, http_allowed: None
) -> None:
    created = api.post(
        "/api/v1/webhooks",
        {"payload_url": URL, "headers": {"X-Api-Key": API_KEY, "X-Outlet": "Main"}},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    webhook = created.json()["webhook"]
    assert webhook["headers"] == {"X-Api-Key": "****4b3c", "X-Outlet": "****"}
    assert API_KEY not in created.content.decode()
    endpoint = Endpoint.objects.get(public_id=webhook["id"])
    assert endpoint.headers == {"X-Api-Key": API_KEY, "X-Outlet": "Main"}

    listed = api.get("/api/v1/webhooks").content.decode()
    assert API_KEY not in listed and "****4b3c" in listed

    # What GET showed, sent back with one value changed: the masked one keeps its value.
    read = api.get(f"/api/v1/webhooks/{endpoint.public_id}").json()["webhook"]["headers"]
    read["X-Outlet"] = "Airport"
    patched = api.patch(
        f"/api/v1/webhooks/{endpoint.public_id}", {"headers": read}, content_type="application/json"
    )
    assert patched.status_code == 200, patched.content
    endpoint.refresh_from_db()
    assert endpoint.headers == {"X-Api-Key": API_KEY, "X-Outlet": "Airport"}

    api.patch(
        f"/api/v1/webhooks/{endpoint.public_id}", {"headers": None}, content_type="application/json"
    )
    endpoint.refresh_from_db()
    assert endpoint.headers == {}
    assert endpoint.custom_headers == ""


def test_it_takes_headers_as_json_text_in_a_form(api: Client, http_allowed: None) -> None:
    from urllib.parse import urlencode

    body = urlencode({"payload_url": URL, "headers": json.dumps({"X-Api-Key": API_KEY})})
    created = api.post("/api/v1/webhooks", body, content_type="application/x-www-form-urlencoded")
    assert created.status_code == 201, created.content
    assert created.json()["webhook"]["headers"] == {"X-Api-Key": "****4b3c"}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Content-Type": "text/plain"}, "Header Content-Type is set by the sender"),
        ({"webhook-signature": "v1,x"}, "Header webhook-signature is set by the sender"),
        ({"Bad Name": "1"}, "'Bad Name' is not a valid HTTP header name"),
        ({"X-A": "a\nb"}, "The value of header X-A may hold only printable"),
        ({f"X-{n}": "v" for n in range(21)}, "At most 20 custom headers"),
        ("X-Api-Key: 1", "not valid JSON"),
        ([1], "Each header is an object"),
    ],
)
def test_it_refuses_bad_headers_with_a_400_and_stores_nothing(
    api: Client, merchant: Merchant, http_allowed: None, headers: Any, message: str
) -> None:
    response = api.post(
        "/api/v1/webhooks",
        {"payload_url": URL, "headers": headers},
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert message in str(error["fields"]["headers"])
    assert not Endpoint.objects.filter(merchant=merchant).exists()

    endpoint = Endpoint.objects.create(merchant=merchant, url=URL)
    endpoint.headers = {"X-Api-Key": API_KEY}
    endpoint.save()
    response = api.patch(
        f"/api/v1/webhooks/{endpoint.public_id}",
        {"headers": headers, "description": "changed"},
        content_type="application/json",
    )
    assert response.status_code == 400
    endpoint.refresh_from_db()
    assert (endpoint.headers, endpoint.description) == ({"X-Api-Key": API_KEY}, "")


def test_it_documents_the_headers_in_the_openapi_schema(api: Client) -> None:
    components = api.get("/api/v1/openapi.json").json()["components"]["schemas"]
    for name in ("WebhookInputRequest", "PatchedWebhookInputRequest", "WebhookOutput"):
        field = components[name]["properties"]["headers"]
        assert field["type"] == "object"
        assert field["maxProperties"] == 20


# --- the dashboard and the admin ------------------------------------------------------------


def test_it_adds_headers_in_the_form_and_keeps_masked_lines_on_edit(
    owner_client: Client, merchant: Merchant, webhook_form: Callable[..., dict[str, Any]]
) -> None:
    response = owner_client.post(
        "/webhooks/add/", webhook_form(headers=f"X-Api-Key: {API_KEY}\nX-Outlet: Main\n")
    )
    assert response.status_code == 302
    endpoint = Endpoint.objects.get()
    assert endpoint.headers == {"X-Api-Key": API_KEY, "X-Outlet": "Main"}

    detail = owner_client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert "X-Api-Key: ****4b3c" in detail and API_KEY not in detail

    edit = owner_client.get(f"/webhooks/{endpoint.public_id}/edit/").content.decode()
    assert "X-Api-Key: ****4b3c\nX-Outlet: ****" in edit and API_KEY not in edit

    # The masked key line left as it is keeps its value; the outlet line is changed.
    owner_client.post(
        f"/webhooks/{endpoint.public_id}/edit/",
        webhook_form(headers="X-Api-Key: ****4b3c\nX-Outlet: Airport"),
    )
    endpoint.refresh_from_db()
    assert endpoint.headers == {"X-Api-Key": API_KEY, "X-Outlet": "Airport"}

    owner_client.post(f"/webhooks/{endpoint.public_id}/edit/", webhook_form(headers=""))
    endpoint.refresh_from_db()
    assert endpoint.headers == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("X-Api-Key", "Line 1 is not Name: value."),
        ("Host: evil.example", "Header Host is set by the sender"),
        ("X Key: 1", "&#x27;X Key&#x27; is not a valid HTTP header name"),
        ("X-A: 1\nx-a: 2", "Header x-a is given twice"),
        ("\n".join(f"X-{n}: v" for n in range(21)), "At most 20 custom headers"),
    ],
)
def test_it_shows_bad_headers_on_the_field_and_stores_nothing(
    owner_client: Client,
    merchant: Merchant,
    webhook_form: Callable[..., dict[str, Any]],
    text: str,
    message: str,
) -> None:
    response = owner_client.post("/webhooks/add/", webhook_form(headers=text))
    assert response.status_code == 200
    page = response.content.decode()
    field = page[page.index('for="id_headers"') : page.index('name="log_mode"')]
    assert message in field
    assert not Endpoint.objects.exists()


def test_it_reveals_the_values_on_a_post_only_to_the_owner(
    owner_client: Client, outsider: User, merchant: Merchant
) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/hook")
    endpoint.headers = {"X-Api-Key": API_KEY}
    endpoint.save()
    path = f"/webhooks/{endpoint.public_id}/headers/reveal/"

    assert owner_client.get(path).status_code == 405
    inline = owner_client.post(path, headers={"X-Inline": "1"})
    assert f"X-Api-Key: {API_KEY}" in inline.content.decode()
    assert "no-store" in inline["Cache-Control"]
    page = owner_client.post(path)
    assert f"X-Api-Key: {API_KEY}" in page.content.decode()
    assert "no-store" in page["Cache-Control"]

    other = Client()
    other.force_login(outsider)
    assert other.post(path).status_code == 404


def test_it_shows_header_names_masked_and_read_only_in_the_admin(
    staff_client: Client, merchant: Merchant
) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/hook")
    endpoint.headers = {"X-Api-Key": API_KEY}
    endpoint.save()
    page = staff_client.get(f"/admin/endpoints/endpoint/{endpoint.pk}/change/").content.decode()
    assert "X-Api-Key: ****4b3c" in page
    assert API_KEY not in page
    assert 'name="custom_headers"' not in page
