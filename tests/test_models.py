from __future__ import annotations

import re

import pytest

from accounts.models import Merchant
from catalogue import seed as catalogue
from catalogue.models import EventType
from deliveries.models import Event, UnknownEventType
from endpoints.models import Endpoint


def test_it_gives_merchants_public_ids(db: None) -> None:
    a = Merchant.objects.create(name="A")
    b = Merchant.objects.create(name="B")
    assert re.fullmatch(r"mrc_[a-z0-9]{24}", a.public_id)
    assert a.public_id != b.public_id


def test_it_numbers_events_per_merchant(merchant: Merchant, outsider_merchant: Merchant) -> None:
    first = Event.objects.create_event(merchant, "receipts.update", {"n": 1})
    other = Event.objects.create_event(outsider_merchant, "receipts.update", {"n": 1})
    second = Event.objects.create_event(merchant, "products.update", {"n": 2})
    assert (first.sequence, second.sequence) == (1, 2)
    assert other.sequence == 1
    assert re.fullmatch(r"evt_[a-z0-9]{24}", first.public_id)
    merchant.refresh_from_db()
    assert merchant.event_sequence == 2


def test_it_refuses_unknown_event_types(merchant: Merchant) -> None:
    with pytest.raises(UnknownEventType, match=r"nope\.update"):
        Event.objects.create_event(merchant, "nope.update", {})
    assert not Event.objects.exists()
    merchant.refresh_from_db()
    assert merchant.event_sequence == 0


def test_it_seeds_every_vendor_event_type(db: None) -> None:
    names = set(EventType.objects.values_list("name", flat=True))
    salesplay = {
        "inventory_levels.update",
        "products.update",
        "customers.update",
        "receipts.update",
        "credit_note.update",
    }
    assert salesplay <= names
    assert "pos.payment.completed" in names
    assert "webhook.test" in names
    # DealPOS: product, customer invoice, contact, supplier bill, outlet delivery, adjustment,
    # configuration; Smart Router: transaction status changes.
    for prefix in (
        "product.",
        "invoice.",
        "contact.",
        "supplier_bill.",
        "outlet_delivery.",
        "adjustment.",
        "configuration.",
        "transaction.",
    ):
        assert any(n.startswith(prefix) for n in names), prefix
    assert len(names) == len(catalogue.EVENT_TYPES)
    sample = EventType.objects.get(name="inventory_levels.update").sample
    assert sample["inventory_levels"][0]["product_code"] == "10003"
    assert EventType.objects.get(name="pos.payment.completed").category.name == "Payments"


def test_it_masks_basic_auth_passwords(merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(
        merchant=merchant, url="https://shop:s3cret@example.com/hook"
    )
    assert "s3cret" not in endpoint.masked_url
    assert "s3cret" not in str(endpoint)
    assert endpoint.masked_url.startswith("https://shop:")


def test_it_gives_new_endpoints_standard_webhooks_secrets(merchant: Merchant) -> None:
    a = Endpoint.objects.create(merchant=merchant, url="https://example.com/a")
    b = Endpoint.objects.create(merchant=merchant, url="https://example.com/b")
    assert a.secret.startswith("whsec_") and a.secret != b.secret
    assert re.fullmatch(r"ep_[a-z0-9]{24}", a.public_id)


def test_it_keeps_the_old_secret_signing_for_a_day_after_rotation(merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="https://example.com/a")
    old = endpoint.secret
    new = endpoint.rotate_secret()
    assert endpoint.signing_secrets() == [new, old]
    later = endpoint.previous_secret_expires_at
    assert later is not None
    assert endpoint.signing_secrets(now=later) == [new]
