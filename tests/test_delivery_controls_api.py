"""Rate limit and ordered delivery, as merchants, integrators and staff see them.

The webhook's `rate_limit` and `ordering_key` in the API (JSON and form-encoded), the
dashboard form and settings, the admin and the OpenAPI schema; per delivery, its
`ordering_value` and what it waits for, in the API, the dashboard and the admin; and the
manual retry that goes behind newer deliveries of its value unless asked to keep its place.
How the engine holds the rate and the order is tested with the engine, not here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import Merchant, User
from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint

pytestmark = pytest.mark.django_db(transaction=True)

URL = "http://127.0.0.1:9/hook"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def create(api: Client, **fields: Any) -> Any:
    return api.post(
        "/api/v1/webhooks", {"payload_url": URL, **fields}, content_type="application/json"
    )


def patch(api: Client, endpoint: Endpoint, body: Any, content_type: str = JSON) -> Any:
    return api.patch(f"/api/v1/webhooks/{endpoint.public_id}", body, content_type=content_type)


# --- the webhook's two controls in the API ------------------------------------------------


def test_it_takes_both_controls_on_create_and_shows_them(api: Client, merchant: Merchant) -> None:
    created = create(api, rate_limit=50, ordering_key="invoice.number")
    assert created.status_code == 201, created.content
    webhook = created.json()["webhook"]
    assert (webhook["rate_limit"], webhook["ordering_key"]) == (50, "invoice.number")
    endpoint = Endpoint.objects.get(public_id=webhook["id"])
    assert (endpoint.rate_limit, endpoint.ordering_key) == (50, "invoice.number")

    read = api.get(f"/api/v1/webhooks/{endpoint.public_id}").json()["webhook"]
    assert (read["rate_limit"], read["ordering_key"]) == (50, "invoice.number")
    # `rate_next_at` is the engine's own: never shown.
    assert "rate_next_at" not in read

    plain = create(api).json()["webhook"]
    assert (plain["rate_limit"], plain["ordering_key"]) == (None, None)
    listed = {w["id"]: w for w in api.get("/api/v1/webhooks").json()["webhooks"]}
    assert listed[plain["id"]]["ordering_key"] is None
    assert listed[endpoint.public_id]["rate_limit"] == 50


def test_it_changes_and_clears_them_with_a_patch(api: Client, merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url=URL, description="Back office")
    changed = patch(api, endpoint, {"rate_limit": 5, "ordering_key": "code"})
    assert changed.status_code == 200, changed.content
    assert changed.json()["webhook"]["rate_limit"] == 5
    endpoint.refresh_from_db()
    assert (endpoint.rate_limit, endpoint.ordering_key) == (5, "code")

    # A patch of something else leaves them as they are.
    patch(api, endpoint, {"description": "Till 2"})
    endpoint.refresh_from_db()
    assert (endpoint.rate_limit, endpoint.ordering_key) == (5, "code")

    cleared = patch(api, endpoint, {"rate_limit": None, "ordering_key": None})
    assert cleared.status_code == 200, cleared.content
    assert cleared.json()["webhook"]["ordering_key"] is None
    endpoint.refresh_from_db()
    assert (endpoint.rate_limit, endpoint.ordering_key) == (None, "")

    patch(api, endpoint, {"ordering_key": "lines.0.sku"})
    patch(api, endpoint, {"ordering_key": ""})
    endpoint.refresh_from_db()
    assert endpoint.ordering_key == ""


def test_it_takes_them_form_encoded(api: Client, merchant: Merchant) -> None:
    body = urlencode({"payload_url": URL, "rate_limit": "10", "ordering_key": "code"})
    created = api.post("/api/v1/webhooks", body, content_type=FORM)
    assert created.status_code == 201, created.content
    endpoint = Endpoint.objects.get(public_id=created.json()["webhook"]["id"])
    assert (endpoint.rate_limit, endpoint.ordering_key) == (10, "code")

    # Empty form values mean "none".
    cleared = patch(api, endpoint, urlencode({"rate_limit": "", "ordering_key": ""}), FORM)
    assert cleared.status_code == 200, cleared.content
    endpoint.refresh_from_db()
    assert (endpoint.rate_limit, endpoint.ordering_key) == (None, "")


BAD_VALUES = [
    ("rate_limit", 0, "greater than or equal to 1"),
    ("rate_limit", 1001, "less than or equal to 1000"),
    ("rate_limit", -5, "greater than or equal to 1"),
    ("rate_limit", "abc", "A valid integer is required"),
    ("rate_limit", 1.5, "A valid integer is required"),
    ("ordering_key", "invoice number", "is not a dotted path"),
    ("ordering_key", "lines.$.sku", "is not a dotted path"),
    ("ordering_key", "$code", "is not a dotted path"),
    ("ordering_key", "invoice..number", "is not a dotted path"),
    ("ordering_key", "a" * 201, "at most 200 characters"),
    ("ordering_key", ".".join("a" * 11), "at most 10 parts"),
    ("ordering_key", 7, "Must be a dotted path"),
    ("ordering_key", ["code"], "Must be a dotted path"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES)
def test_it_refuses_bad_values_with_a_400_naming_the_field_and_changes_nothing(
    api: Client, merchant: Merchant, field: str, value: Any, message: str
) -> None:
    response = create(api, **{field: value})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert list(error["fields"]) == [field]
    assert message in str(error["fields"][field])
    assert not Endpoint.objects.filter(merchant=merchant).exists()

    endpoint = Endpoint.objects.create(
        merchant=merchant, url=URL, rate_limit=20, ordering_key="code"
    )
    response = patch(api, endpoint, {field: value, "description": "changed"})
    assert response.status_code == 400
    assert message in str(response.json()["error"]["fields"][field])
    endpoint.refresh_from_db()
    assert (endpoint.rate_limit, endpoint.ordering_key, endpoint.description) == (20, "code", "")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rate_limit", "abc", "A valid integer is required"),
        ("rate_limit", "0", "greater than or equal to 1"),
        ("ordering_key", "invoice number", "is not a dotted path"),
    ],
)
def test_it_refuses_bad_form_encoded_values_too(
    api: Client, merchant: Merchant, field: str, value: str, message: str
) -> None:
    body = urlencode({"payload_url": URL, field: value})
    response = api.post("/api/v1/webhooks", body, content_type=FORM)
    assert response.status_code == 400, response.content
    assert message in str(response.json()["error"]["fields"][field])
    assert not Endpoint.objects.filter(merchant=merchant).exists()


# --- deliveries: their ordering value and what they wait for -------------------------------


@pytest.fixture
def ordered(merchant: Merchant, make_endpoint: Callable[..., Endpoint]) -> Endpoint:
    return make_endpoint(URL, ordering_key="code")


def delivery_of(endpoint: Endpoint, code: Any, status: str = "pending", **changes: Any) -> Delivery:
    """One delivery to `endpoint` of a products event whose data has this `code`.

    Its ordering value is set as the engine stores it (the JSON text of the field), so
    these tests do not depend on which engine creates deliveries.
    """
    event = emit(endpoint.merchant, "receipts.update", {"code": code, "name": "Flat white"})
    value = None if code is None else json.dumps(code)
    Delivery.objects.filter(event=event, endpoint=endpoint).update(
        ordering_value=value, status=status, **changes
    )
    return Delivery.objects.get(event=event, endpoint=endpoint)


def test_it_shows_the_ordering_value_and_what_a_delivery_waits_for(
    api: Client, ordered: Endpoint
) -> None:
    first = delivery_of(ordered, "P-1", "failed", attempts=1)
    second = delivery_of(ordered, "P-1", "delivering", attempts=1)
    third = delivery_of(ordered, "P-1")
    fourth = delivery_of(ordered, "P-1")
    other = delivery_of(ordered, "P-2")
    numbered = delivery_of(ordered, 7)
    unordered = delivery_of(ordered, None)

    listed = {d["id"]: d for d in api.get("/api/v1/deliveries").json()["deliveries"]}
    shown = {
        d.public_id: (listed[d.public_id]["ordering_value"], listed[d.public_id]["waiting_for"])
        for d in (first, second, third, fourth, other, numbered, unordered)
    }
    assert shown == {
        first.public_id: ("P-1", None),  # failed: it waits for nothing
        second.public_id: ("P-1", None),  # being sent
        third.public_id: ("P-1", second.public_id),  # a failed one no longer holds the value
        fourth.public_id: ("P-1", third.public_id),
        other.public_id: ("P-2", None),
        numbered.public_id: ("7", None),
        unordered.public_id: (None, None),
    }

    one = api.get(f"/api/v1/deliveries/{fourth.public_id}").json()["delivery"]
    assert (one["ordering_value"], one["waiting_for"]) == ("P-1", third.public_id)
    event = api.get(f"/api/v1/events/{fourth.event.public_id}").json()["event"]
    assert event["deliveries"][0]["waiting_for"] == third.public_id


def test_it_lists_a_page_of_deliveries_in_as_many_queries_however_many_wait(
    api: Client, ordered: Endpoint
) -> None:
    def queries_for_the_list() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = api.get("/api/v1/deliveries?limit=100")
        assert response.status_code == 200
        return len(captured.captured_queries)

    for _ in range(3):
        delivery_of(ordered, "P-1")
    queries_for_the_list()  # the first request with a key also notes when it was last used
    few = queries_for_the_list()
    for n in range(12):
        delivery_of(ordered, f"P-{n % 3}")
    many = api.get("/api/v1/deliveries?limit=100").json()["deliveries"]
    assert sum(1 for d in many if d["waiting_for"]) == 12
    assert queries_for_the_list() == few


def test_it_retries_an_ordered_delivery_behind_newer_ones_unless_asked_to_keep_its_place(
    api: Client, ordered: Endpoint
) -> None:
    first = delivery_of(ordered, "P-1", "failed", attempts=3)
    second = delivery_of(ordered, "P-1", attempts=1)
    third = delivery_of(ordered, "P-1")

    def waits() -> dict[str, str | None]:
        listed = api.get("/api/v1/deliveries").json()["deliveries"]
        return {d["id"]: d["waiting_for"] for d in listed}

    response = api.post(f"/api/v1/deliveries/{first.public_id}/retry")
    assert response.status_code == 202, response.content
    assert response.json()["delivery"]["waiting_for"] == third.public_id
    # The old failure did not jump ahead of the newer ones of its value.
    assert waits() == {
        first.public_id: third.public_id,
        second.public_id: None,
        third.public_id: second.public_id,
    }

    # Another value: this time the merchant keeps the failed one's place.
    failed = delivery_of(ordered, "P-2", "failed", attempts=3)
    newer = delivery_of(ordered, "P-2")
    kept = api.post(
        f"/api/v1/deliveries/{failed.public_id}/retry",
        {"keep_place": True},
        content_type="application/json",
    )
    assert kept.status_code == 202, kept.content
    assert kept.json()["delivery"]["waiting_for"] is None
    assert waits()[newer.public_id] == failed.public_id


def test_it_refuses_a_keep_place_that_is_not_a_boolean(api: Client, ordered: Endpoint) -> None:
    failed = delivery_of(ordered, "P-1", "failed", attempts=3)
    response = api.post(
        f"/api/v1/deliveries/{failed.public_id}/retry",
        {"keep_place": "perhaps"},
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    assert "keep_place" in response.json()["error"]["fields"]
    failed.refresh_from_db()
    assert failed.status == Delivery.Status.FAILED


# --- the dashboard ---------------------------------------------------------------------------


def field_html(page: str, name: str, next_name: str) -> str:
    """The part of the page from one form field's label to the next field's."""
    return page[page.index(f'for="id_{name}"') : page.index(f'for="id_{next_name}"')]


def test_it_sets_both_in_the_form_and_shows_them_in_the_settings(
    owner_client: Client, merchant: Merchant, webhook_form: Callable[..., dict[str, Any]]
) -> None:
    form = owner_client.get("/webhooks/add/").content.decode()
    assert "deliveries per second" in field_html(form, "rate_limit", "ordering_key")
    help_text = field_html(form, "ordering_key", "send_test")
    assert "code for products or number for invoices" in help_text

    response = owner_client.post(
        "/webhooks/add/", webhook_form(rate_limit="25", ordering_key="invoice.number")
    )
    assert response.status_code == 302
    endpoint = Endpoint.objects.get()
    assert (endpoint.rate_limit, endpoint.ordering_key) == (25, "invoice.number")

    detail = owner_client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert "At most 25 deliveries per second" in detail
    assert "<code>invoice.number</code>: deliveries with the same value go one at a time" in detail
    edit = owner_client.get(f"/webhooks/{endpoint.public_id}/edit/").content.decode()
    assert 'value="25"' in field_html(edit, "rate_limit", "ordering_key")
    assert 'value="invoice.number"' in field_html(edit, "ordering_key", "send_test")

    owner_client.post(
        f"/webhooks/{endpoint.public_id}/edit/", webhook_form(rate_limit="", ordering_key="")
    )
    endpoint.refresh_from_db()
    assert (endpoint.rate_limit, endpoint.ordering_key) == (None, "")
    detail = owner_client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert "<dt>Rate limit</dt>\n      <dd>None</dd>" in detail
    assert "None: deliveries go as they come" in detail


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rate_limit", "0", "greater than or equal to 1"),
        ("rate_limit", "1001", "less than or equal to 1000"),
        ("rate_limit", "abc", "Enter a whole number"),
        ("rate_limit", "1.5", "Enter a whole number"),
        ("ordering_key", "invoice number", "is not a dotted path"),
        ("ordering_key", "lines.$.sku", "is not a dotted path"),
        ("ordering_key", "a" * 201, "at most 200 characters"),
    ],
)
def test_it_shows_bad_values_on_the_field_and_saves_nothing(
    owner_client: Client,
    merchant: Merchant,
    webhook_form: Callable[..., dict[str, Any]],
    field: str,
    value: str,
    message: str,
) -> None:
    response = owner_client.post("/webhooks/add/", webhook_form(**{field: value}))
    assert response.status_code == 200
    page = response.content.decode()
    after = {"rate_limit": "ordering_key", "ordering_key": "send_test"}[field]
    assert message in field_html(page, field, after)
    assert not Endpoint.objects.exists()

    endpoint = Endpoint.objects.create(merchant=merchant, url=URL, rate_limit=20)
    response = owner_client.post(
        f"/webhooks/{endpoint.public_id}/edit/", webhook_form(**{field: value})
    )
    assert message in field_html(response.content.decode(), field, after)
    endpoint.refresh_from_db()
    assert (endpoint.rate_limit, endpoint.ordering_key, endpoint.description) == (20, "", "")


def test_it_shows_what_a_waiting_ordered_delivery_waits_for(
    owner_client: Client, ordered: Endpoint
) -> None:
    sending = delivery_of(ordered, "P-1", "delivering", attempts=1)
    waiting = delivery_of(ordered, "P-1")
    alone = delivery_of(ordered, "P-2")
    link = (
        f'Waiting for <a href="/deliveries/{sending.public_id}/">'
        f"<code>{sending.public_id}</code></a> of the same code"
    )

    table = owner_client.get(f"/webhooks/{ordered.public_id}/").content.decode()
    assert table.count("Waiting for <a") == 1
    row = table[table.index(f"<code>{waiting.public_id}</code>") :]
    assert row.index(link) < row.index("</tr>")

    page = owner_client.get(f"/deliveries/{waiting.public_id}/").content.decode()
    assert link in page
    assert "<dt>Ordering value</dt><dd><code>P-1</code> (its code)</dd>" in page
    event_page = owner_client.get(f"/events/{waiting.event.public_id}/").content.decode()
    assert link in event_page
    alone_page = owner_client.get(f"/deliveries/{alone.public_id}/").content.decode()
    assert "Waiting for <a" not in alone_page


def test_it_shows_the_webhook_page_in_as_many_queries_however_many_wait(
    owner_client: Client, ordered: Endpoint
) -> None:
    def queries_for_the_page() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = owner_client.get(f"/webhooks/{ordered.public_id}/")
        assert response.status_code == 200
        return len(captured.captured_queries)

    delivery_of(ordered, "P-1")
    delivery_of(ordered, "P-1")
    few = queries_for_the_page()
    for n in range(10):
        delivery_of(ordered, f"P-{n % 2}")
    assert queries_for_the_page() == few


def test_it_explains_the_retry_of_an_ordered_delivery_and_can_keep_its_place(
    owner_client: Client, ordered: Endpoint, outsider: User
) -> None:
    failed = delivery_of(ordered, "P-1", "failed", attempts=3)
    newer = delivery_of(ordered, "P-1")
    plain = delivery_of(ordered, None, "failed", attempts=3)

    page = owner_client.get(f"/deliveries/{failed.public_id}/").content.decode()
    assert "Retry sends it after the deliveries of the same code (P-1) that are waiting" in page
    assert 'name="keep_place" value="1"' in page
    table = owner_client.get(f"/webhooks/{ordered.public_id}/").content.decode()
    assert table.count('name="keep_place"') == 1  # the unordered failure has one plain Retry
    assert 'name="keep_place"' not in (
        owner_client.get(f"/deliveries/{plain.public_id}/").content.decode()
    )

    # Another merchant's user: 404, and nothing is retried.
    other = Client()
    other.force_login(outsider)
    retry = f"/deliveries/{failed.public_id}/retry/"
    assert other.post(retry, {"keep_place": "1"}).status_code == 404
    failed.refresh_from_db()
    assert failed.status == Delivery.Status.FAILED
    assert owner_client.get(retry).status_code == 405

    def waits_for(delivery: Delivery) -> str:
        page = owner_client.get(f"/deliveries/{delivery.public_id}/").content.decode()
        return page.split('<dd class="waiting-for">', 1)[-1].split("</dd>", 1)[0]

    response = owner_client.post(retry, follow=True)
    assert "after the deliveries of the same code that are waiting" in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == Delivery.Status.PENDING
    assert f"/deliveries/{newer.public_id}/" in waits_for(failed)  # behind the newer one

    # Another value: this time the merchant keeps the failed one's place.
    failed = delivery_of(ordered, "P-2", "failed", attempts=3)
    newer = delivery_of(ordered, "P-2")
    keep = f"/deliveries/{failed.public_id}/retry/"
    response = owner_client.post(keep, {"keep_place": "1"}, follow=True)
    assert "in its own place" in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == Delivery.Status.PENDING
    assert f"/deliveries/{failed.public_id}/" in waits_for(newer)  # the newer one waits for it


# --- the admin -------------------------------------------------------------------------------


def admin_form_data(response: Any) -> dict[str, Any]:
    """What the admin's change form would post back unchanged."""
    form = response.context["adminform"].form
    data: dict[str, Any] = {}
    for name in form.fields:
        value = form[name].value()
        if value is None:
            continue
        if isinstance(value, list):
            data[name] = [str(v) for v in value]
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        else:
            data[name] = str(value)
    return data


def test_it_lets_staff_change_both_on_an_endpoint_and_validates_the_key(
    staff_client: Client, merchant: Merchant
) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url=URL, rate_limit=5)
    path = f"/admin/endpoints/endpoint/{endpoint.pk}/change/"
    page = staff_client.get(path)
    html = page.content.decode()
    assert 'name="rate_limit"' in html and 'name="ordering_key"' in html
    assert "rate_next_at" not in html
    data = admin_form_data(page)

    bad = staff_client.post(path, {**data, "ordering_key": "invoice number"})
    assert bad.status_code == 200
    assert "is not a dotted path" in bad.content.decode()
    bad = staff_client.post(path, {**data, "rate_limit": "1001"})
    assert "less than or equal to 1000" in bad.content.decode()
    endpoint.refresh_from_db()
    assert (endpoint.rate_limit, endpoint.ordering_key) == (5, "")

    saved = staff_client.post(path, {**data, "rate_limit": "40", "ordering_key": "code"})
    assert saved.status_code == 302, saved.content
    endpoint.refresh_from_db()
    assert (endpoint.rate_limit, endpoint.ordering_key) == (40, "code")


def test_it_shows_staff_the_ordering_value_and_what_a_delivery_waits_for(
    staff_client: Client, ordered: Endpoint
) -> None:
    first = delivery_of(ordered, "P-1", "delivering", attempts=1)
    second = delivery_of(ordered, "P-1")
    unordered = delivery_of(ordered, None)

    page = staff_client.get(f"/admin/deliveries/delivery/{second.pk}/change/").content.decode()
    assert "Ordering value" in page and "P-1" in page
    assert f'?q={first.public_id}">{first.public_id}</a>' in page
    assert 'name="ordering_value"' not in page  # read-only

    page = staff_client.get(f"/admin/deliveries/delivery/{unordered.pk}/change/").content.decode()
    assert "Not ordered" in page


# --- the OpenAPI schema ----------------------------------------------------------------------


def test_it_documents_both_controls_and_the_delivery_fields_in_the_openapi_schema(
    api: Client,
) -> None:
    response = api.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schemas = response.json()["components"]["schemas"]
    for name in ("WebhookInputRequest", "PatchedWebhookInputRequest", "WebhookOutput"):
        rate = schemas[name]["properties"]["rate_limit"]
        assert rate["type"] == "integer" and rate["nullable"] is True
        assert "per second" in rate["description"]
        key = schemas[name]["properties"]["ordering_key"]
        assert key["type"] == "string" and key["nullable"] is True
        assert key["maxLength"] == 200 and "dotted path" in key["description"]
    assert schemas["WebhookInputRequest"]["properties"]["rate_limit"]["minimum"] == 1
    assert schemas["WebhookInputRequest"]["properties"]["rate_limit"]["maximum"] == 1000
    for field in ("ordering_value", "waiting_for"):
        shown = schemas["DeliveryOutput"]["properties"][field]
        assert shown["type"] == "string" and shown["nullable"] is True
        assert "Ordered delivery" in shown["description"]
    keep = schemas["RetryInputRequest"]["properties"]["keep_place"]
    assert keep["type"] == "boolean" and "its original place" in keep["description"]
    retry = response.json()["paths"]["/api/v1/deliveries/{public_id}/retry"]["post"]
    assert "keep_place" in retry["description"]
    assert "RetryInputRequest" in json.dumps(retry["requestBody"])
