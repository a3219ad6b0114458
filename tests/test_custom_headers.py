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
from standardwebhooks.webhooks import Webhook

from accounts.models import Merchant
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
