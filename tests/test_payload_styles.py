"""The flat payload style (issue 15, item 13): SalesPlay's receivers parse a flat body.

SalesPlay's webhook documentation shows what its receivers get for an
`inventory_levels.update`; an endpoint with the flat style gets exactly that, byte for byte
once the document's line breaks are taken out, and the Standard Webhooks headers still sign it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test import Client

from accounts.models import ApiKey, Merchant, User
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from lib import signing
from tests.conftest import Receiver

# The document's example, as printed there (one key or value per line).
SALESPLAY_EXAMPLE = """{
"merchant_id": "WFpYWmQwMkJGVWtDT3RHY1NHYjdBT0YzZE5xOD0=",
"type": "inventory_levels.update",
"created_at": "2025-06-30 12:54:31",
"inventory_levels": [
{
"product_id": "QWhxek54UkQ3eTArdml2d1NkSDVnUT09",
"shop_id": "bHF2M2pMakkzTVZ0NFh2SE1WNnNoUT09",
"product_code": "10003",
"in_stock": 10
}
]
}"""
SALESPLAY_MERCHANT = "WFpYWmQwMkJGVWtDT3RHY1NHYjdBT0YzZE5xOD0="
SALESPLAY_DATA = {
    "inventory_levels": json.loads(SALESPLAY_EXAMPLE)["inventory_levels"],
}


def compact(text: str) -> bytes:
    return json.dumps(json.loads(text), separators=(",", ":")).encode()


@pytest.fixture
def salesplay_merchant(db: None) -> Merchant:
    # The document's merchant id fits our public id column, so the body can match it exactly.
    return Merchant.objects.create(name="SalesPlay shop", public_id=SALESPLAY_MERCHANT)


@pytest.mark.django_db(transaction=True)
def test_it_sends_salesplays_own_example_byte_for_byte(
    salesplay_merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    endpoint = make_endpoint(
        receiver.url(),
        types=("inventory_levels.update",),
        merchant=salesplay_merchant,
        payload_style=Endpoint.PayloadStyle.FLAT,
    )
    api = Client(headers={"authorization": f"Bearer {ApiKey.issue(salesplay_merchant, 'POS')[1]}"})
    response = api.post(
        "/api/v1/events",
        json.dumps({"type": "inventory_levels.update", "data": SALESPLAY_DATA}),
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    # The document's moment, so the whole body can be compared.
    Event.objects.update(created_at=datetime(2025, 6, 30, 12, 54, 31, 250000, tzinfo=UTC))
    work(until=lambda: Delivery.objects.filter(status="succeeded").exists())

    [request] = receiver.requests
    if connection.vendor == "postgresql":
        # jsonb keeps no key order inside the stored data (receivers parse it anyway): the
        # same JSON, with the document's top-level keys in the document's order.
        assert json.loads(request.body) == json.loads(SALESPLAY_EXAMPLE)
        assert list(json.loads(request.body)) == list(json.loads(SALESPLAY_EXAMPLE))
    else:
        assert request.body == compact(SALESPLAY_EXAMPLE)
    # The Standard Webhooks headers are the same as for every other style.
    event = Event.objects.get()
    assert request.headers["webhook-id"] == event.public_id
    assert signing.verify(
        endpoint.secret,
        request.headers["webhook-id"],
        request.headers["webhook-timestamp"],
        request.body,
        request.headers["webhook-signature"],
    )


def test_it_never_lets_data_keys_replace_the_envelope(merchant: Merchant) -> None:
    event = Event.objects.create_event(
        merchant, "receipts.update", {"merchant_id": "mrc_forged", "type": "x", "total": "9.99"}
    )
    body = json.loads(event.body(style="flat"))
    assert body["merchant_id"] == merchant.public_id
    assert body["type"] == "receipts.update"
    assert body["total"] == "9.99"
    assert list(body)[:3] == ["merchant_id", "type", "created_at"]


def test_it_keeps_the_full_and_thin_styles(merchant: Merchant) -> None:
    event = Event.objects.create_event(merchant, "receipts.update", {"total": "9.99"})
    assert set(json.loads(event.body())) == {
        "id",
        "type",
        "created_at",
        "merchant_id",
        "sequence",
        "data",
    }
    assert "data" not in json.loads(event.body(thin=True))
    assert "data" not in json.loads(event.body(style="thin"))


def test_it_offers_the_flat_style_in_the_form_api_and_catalogue(
    client: Client, owner: User, merchant: Merchant
) -> None:
    client.force_login(owner)
    form = client.get("/webhooks/add/").content.decode()
    assert 'value="flat"' in form and "SalesPlay" in form

    catalogue = client.get("/catalogue/").content.decode()
    assert "&quot;inventory_levels&quot;" in catalogue or '"inventory_levels"' in catalogue
    assert "flat" in catalogue and "2025-06-30 12:54:31" in catalogue

    api = Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})
    response = api.post(
        "/api/v1/webhooks",
        {"payload_url": "http://127.0.0.1:9/hook", "payload_style": "flat"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["webhook"]["payload_style"] == "flat"
