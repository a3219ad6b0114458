"""The seeded event catalogue: every event type the POS vendors' webhook documents name.

`install()` is idempotent (update or create) so a later migration can call it again after
the list grows; staff add their own types in the admin.
"""

from __future__ import annotations

from typing import Any

CATEGORIES: list[tuple[str, str, str]] = [
    ("inventory", "Inventory", "Stock levels, deliveries between outlets and adjustments."),
    ("products", "Products", "Products created, edited or deleted."),
    ("customers", "Customers", "Customer and contact records."),
    ("sales", "Sales", "Receipts, invoices, credit notes and refunds."),
    ("payments", "Payments", "Card and alternative payments and their status changes."),
    ("suppliers", "Suppliers", "Supplier bills."),
    ("configuration", "Configuration", "Changes to the POS set-up."),
    ("testing", "Testing", "Events that only exist to try a webhook."),
    ("platform", "Platform", "What happens to webhooks themselves: failing, paused, disabled."),
]

# The platform's operational events (category "platform"): sent by the engine about a
# merchant's webhooks, never emitted by a POS system.
PLATFORM_CATEGORY = "platform"
_OPERATIONAL_SAMPLE = {
    "merchant_id": "mrc_0123456789abcdefghijklmn",
    "endpoint_id": "ep_0123456789abcdefghijklmn",
    "url": "https://erp.example.com/hook",
    "link": "https://webhooks.example.com/webhooks/ep_0123456789abcdefghijklmn/",
}
PLATFORM_EVENT_TYPES: list[tuple[str, str, dict[str, Any]]] = [
    ("endpoint.created", "A webhook was added.", {}),
    ("endpoint.deleted", "A webhook was deleted.", {}),
    (
        "endpoint.failing",
        "A webhook has failed for half the auto-disable window: it will be disabled if it "
        "keeps failing.",
        {"failing_since": "2026-01-31T10:00:00.000Z"},
    ),
    (
        "endpoint.disabled",
        "A webhook was disabled: by the merchant, by staff, for failing through the whole "
        "window, or because its receiver answered 410 Gone.",
        {"reason": "failing", "detail": "Every delivery failed since 2026-01-31 10:00 UTC."},
    ),
    (
        "endpoint.paused",
        "A webhook's circuit breaker opened: its receiver stopped answering, deliveries wait.",
        {"probe_at": "2026-01-31T10:00:30.000Z"},
    ),
    (
        "endpoint.recovered",
        "A webhook's circuit breaker closed: its receiver answers again, its backlog drains.",
        {},
    ),
    (
        "delivery.exhausted",
        "A delivery failed for good: no attempt is left.",
        {
            "delivery_id": "dlv_0123456789abcdefghijklmn",
            "event_id": "evt_0123456789abcdefghijklmn",
            "event_type": "receipts.update",
            "attempts": 200,
            "last_status_code": 500,
            "last_error": "",
        },
    ),
]

_SALESPLAY_INVENTORY_SAMPLE = {
    "inventory_levels": [
        {
            "product_id": "QWhxek54UkQ3eTArdml2d1NkSDVnUT09",
            "shop_id": "bHF2M2pMakkzTVZ0NFh2SE1WNnNoUT09",
            "product_code": "10003",
            "in_stock": 10,
        }
    ]
}

# (name, category slug, description, source, sample data)
EVENT_TYPES: list[tuple[str, str, str, str, dict[str, Any]]] = [
    # SalesPlay
    (
        "inventory_levels.update",
        "inventory",
        "Product stock levels were updated.",
        "SalesPlay",
        _SALESPLAY_INVENTORY_SAMPLE,
    ),
    (
        "products.update",
        "products",
        "A product was created, edited or deleted.",
        "SalesPlay",
        {"products": [{"product_id": "prd_1001", "product_code": "10003", "name": "Espresso"}]},
    ),
    (
        "customers.update",
        "customers",
        "A customer was created, edited or deleted.",
        "SalesPlay",
        {"customers": [{"customer_id": "cus_2001", "name": "Ada Lovelace", "phone": "+4412345"}]},
    ),
    (
        "receipts.update",
        "sales",
        "A receipt was created or updated.",
        "SalesPlay",
        {"receipts": [{"receipt_no": "R-000123", "shop_id": "shop_1", "total": "12.50"}]},
    ),
    (
        "credit_note.update",
        "sales",
        "A credit note or cash refund was created or updated.",
        "SalesPlay",
        {
            "credit_notes": [
                {"credit_note_no": "CN-000045", "receipt_no": "R-000123", "amount": "4.00"}
            ]
        },
    ),
    # myPOS
    (
        "pos.payment.completed",
        "payments",
        "A card payment on a POS terminal completed.",
        "myPOS",
        {"transaction_id": "tx_9f2c", "amount": "12.50", "currency": "EUR", "terminal_id": "T100"},
    ),
    # DealPOS
    ("product.created", "products", "A product was created.", "DealPOS", {"code": "SKU-1"}),
    ("product.updated", "products", "A product was updated.", "DealPOS", {"code": "SKU-1"}),
    ("product.deleted", "products", "A product was deleted.", "DealPOS", {"code": "SKU-1"}),
    (
        "invoice.created",
        "sales",
        "A customer invoice was created.",
        "DealPOS",
        {"number": "INV-1001", "outlet": "Main", "total": 125000},
    ),
    (
        "invoice.updated",
        "sales",
        "A customer invoice was updated.",
        "DealPOS",
        {"number": "INV-1001"},
    ),
    (
        "invoice.voided",
        "sales",
        "A customer invoice was voided.",
        "DealPOS",
        {"number": "INV-1001"},
    ),
    ("contact.created", "customers", "A contact was created.", "DealPOS", {"code": "C-01"}),
    ("contact.updated", "customers", "A contact was updated.", "DealPOS", {"code": "C-01"}),
    (
        "supplier_bill.created",
        "suppliers",
        "A supplier bill was created.",
        "DealPOS",
        {"number": "BILL-77", "supplier": "Acme Beans", "total": 540000},
    ),
    (
        "supplier_bill.updated",
        "suppliers",
        "A supplier bill was updated.",
        "DealPOS",
        {"number": "BILL-77"},
    ),
    (
        "outlet_delivery.created",
        "inventory",
        "A delivery between outlets was created.",
        "DealPOS",
        {"number": "DO-12", "from_outlet": "Warehouse", "to_outlet": "Main"},
    ),
    (
        "outlet_delivery.received",
        "inventory",
        "A delivery between outlets was received.",
        "DealPOS",
        {"number": "DO-12"},
    ),
    (
        "adjustment.created",
        "inventory",
        "A stock adjustment was made.",
        "DealPOS",
        {"number": "ADJ-3", "items": [{"code": "SKU-1", "quantity": -2}]},
    ),
    (
        "configuration.updated",
        "configuration",
        "The POS configuration changed.",
        "DealPOS",
        {"setting": "tax_rate", "value": "11"},
    ),
    # Smart Router: transaction status changes
    *[
        (
            f"transaction.{status}",
            "payments",
            description,
            "Smart Router",
            {"transaction_id": "txn_5b1d", "status": status},
        )
        for status, description in [
            ("authorized", "A transaction was authorised."),
            ("captured", "A transaction was captured."),
            ("pending", "A transaction is waiting for the payment provider."),
            ("succeeded", "A pending transaction completed."),
            ("failed", "A transaction failed."),
            ("voided", "A transaction was voided."),
            ("refunded", "A transaction was refunded."),
            ("chargeback", "The customer requested a chargeback."),
        ]
    ],
    (
        "webhook.test",
        "testing",
        "A test sent from the dashboard or the API.",
        "POS Webhooks",
        {"message": "This is a test webhook from POS Webhooks."},
    ),
    *[
        (name, PLATFORM_CATEGORY, description, "POS Webhooks", {**_OPERATIONAL_SAMPLE, **extra})
        for name, description, extra in PLATFORM_EVENT_TYPES
    ],
]


def install(category_model: Any, event_type_model: Any) -> None:
    """Create or update the seeded categories and event types (models passed by migrations)."""
    categories = {}
    for position, (slug, name, description) in enumerate(CATEGORIES):
        categories[slug], _ = category_model.objects.update_or_create(
            slug=slug, defaults={"name": name, "description": description, "position": position}
        )
    for name, slug, description, source, sample in EVENT_TYPES:
        event_type_model.objects.update_or_create(
            name=name,
            defaults={
                "category": categories[slug],
                "description": description,
                "source": source,
                "sample": sample,
            },
        )
