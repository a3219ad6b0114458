"""Filters on the payload: only events whose data match a webhook's filter are delivered to it.

End to end with real workers and a real receiver that records which events arrive where, on
every path that creates deliveries; then the API, the dashboard form and the admin.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import Merchant, User
from deliveries import emit, emit_many
from deliveries.engine import send_test
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

MAIN_ONLY = {"outlet": "Main"}
BIG_SALES = {"total": {"$gte": 100000}}


def all_done() -> bool:
    return not Delivery.objects.filter(status__in=["pending", "delivering"]).exists()


def arrived(receiver: Receiver) -> dict[str, list[str]]:
    """Per receiver path, the `data.receipt_no` of each event that reached it, sorted."""
    got: dict[str, list[str]] = {}
    for request in receiver.requests:
        got.setdefault(request.path, []).append(request.json()["data"]["receipt_no"])
    return {path: sorted(numbers) for path, numbers in got.items()}


def test_it_delivers_only_the_events_that_match_each_filter(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    make_endpoint(receiver.url("/big"), filter=BIG_SALES)
    make_endpoint(receiver.url("/all"))

    emit(merchant, "receipts.update", {"receipt_no": "R-1", "outlet": "Main", "total": 5})
    emit(merchant, "receipts.update", {"receipt_no": "R-2", "outlet": "Airport", "total": 200000})
    emit(merchant, "receipts.update", {"receipt_no": "R-3", "outlet": "Mall", "total": 10})
    work(until=all_done)

    assert arrived(receiver) == {
        "/main": ["R-1"],
        "/big": ["R-2"],
        "/all": ["R-1", "R-2", "R-3"],
    }
    # Filtered-out events made no delivery at all: nothing pending, failed or cancelled.
    assert Delivery.objects.count() == 5
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_it_filters_every_event_of_a_batch(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(
        receiver.url("/vip"),
        types=("receipts.update", "customers.update"),
        filter={"customer.tags": "vip", "items.$.sku": {"$regex": "^GIFT-"}},
    )
    emit_many(
        merchant,
        [
            {
                "type": "receipts.update",
                "data": {
                    "receipt_no": "B-1",
                    "customer": {"tags": ["vip"]},
                    "items": [{"sku": "A-1"}, {"sku": "GIFT-9"}],
                },
            },
            {
                "type": "receipts.update",
                "data": {"receipt_no": "B-2", "customer": {"tags": ["new"]}, "items": []},
            },
            {
                "type": "customers.update",
                "data": {
                    "receipt_no": "B-3",
                    "customer": {"tags": ["vip"]},
                    "items": [{"sku": "A-2"}],
                },
            },
        ],
    )
    work(until=all_done)
    assert arrived(receiver) == {"/vip": ["B-1"]}
    assert Delivery.objects.count() == 1


def test_it_filters_an_api_batch(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
    api: Client,
) -> None:
    make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    response = api.post(
        "/api/v1/events/batch",
        {
            "events": [
                {"type": "receipts.update", "data": {"receipt_no": "A-1", "outlet": "Main"}},
                {"type": "receipts.update", "data": {"receipt_no": "A-2", "outlet": "Mall"}},
            ]
        },
        content_type="application/json",
    )
    assert response.status_code in (200, 201, 202), response.content
    work(until=all_done)
    assert arrived(receiver) == {"/main": ["A-1"]}


def test_it_still_sends_a_one_off_url_when_the_webhook_filters_the_event_out(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    emit(
        merchant,
        "receipts.update",
        {"receipt_no": "O-1", "outlet": "Mall"},
        webhook_url=receiver.url("/one-off"),
    )
    work(until=all_done)
    assert arrived(receiver) == {"/one-off": ["O-1"]}


def test_it_resends_to_new_subscribers_only_when_their_filter_matches(
    merchant: Merchant,
    owner: User,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
) -> None:
    event = emit(merchant, "receipts.update", {"receipt_no": "N-1", "outlet": "Mall"})
    make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    make_endpoint(receiver.url("/mall"), filter={"outlet": {"$in": ["Mall", "Airport"]}})
    client = Client()
    client.force_login(owner)

    confirm = client.get(f"/events/{event.public_id}/resend/confirm/").content.decode()
    assert "1 webhook" in confirm

    response = client.post(f"/events/{event.public_id}/resend/")
    assert response.status_code == 302
    work(until=all_done)
    assert arrived(receiver) == {"/mall": ["N-1"]}
    assert Delivery.objects.count() == 1


def test_it_sends_a_test_whatever_the_filter(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    delivery = send_test(endpoint)
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert [r.json()["type"] for r in receiver.requests] == ["webhook.test"]


def test_it_stops_filtering_once_the_filter_is_cleared(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    endpoint = make_endpoint(receiver.url("/main"), filter=MAIN_ONLY)
    emit(merchant, "receipts.update", {"receipt_no": "C-1", "outlet": "Mall"})
    endpoint.filter = None
    endpoint.save()
    emit(merchant, "receipts.update", {"receipt_no": "C-2", "outlet": "Mall"})
    work(until=all_done)
    assert arrived(receiver) == {"/main": ["C-2"]}


def _json(response: Any) -> dict[str, Any]:
    return json.loads(response.content)


# --- the API --------------------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"
URL = "http://127.0.0.1:9/hook"


@pytest.fixture
def http_allowed(settings: Any) -> None:
    settings.WEBHOOK_REQUIRE_HTTPS = False


def test_it_takes_a_filter_on_create_read_and_update(
    api: Client, merchant: Merchant, http_allowed: None
) -> None:
    spec = {"outlet": {"$in": ["Main", "Airport"]}, "total": {"$gte": 100000}}
    created = api.post(
        "/api/v1/webhooks", {"payload_url": URL, "filter": spec}, content_type="application/json"
    )
    assert created.status_code == 201, created.content
    webhook = _json(created)["webhook"]
    assert webhook["filter"] == spec
    assert Endpoint.objects.get(public_id=webhook["id"]).filter == spec

    read = _json(api.get(f"/api/v1/webhooks/{webhook['id']}"))["webhook"]
    assert read["filter"] == spec

    patched = api.patch(
        f"/api/v1/webhooks/{webhook['id']}",
        {"filter": {"customer.tier": "gold"}},
        content_type="application/json",
    )
    assert _json(patched)["webhook"]["filter"] == {"customer.tier": "gold"}
    cleared = api.patch(
        f"/api/v1/webhooks/{webhook['id']}", {"filter": None}, content_type="application/json"
    )
    assert _json(cleared)["webhook"]["filter"] is None
    assert Endpoint.objects.get(public_id=webhook["id"]).filter is None


def test_it_takes_a_filter_as_json_text_in_a_form(api: Client, http_allowed: None) -> None:
    from urllib.parse import urlencode

    body = urlencode({"payload_url": URL, "filter": '{"outlet": "Main"}'})
    created = api.post("/api/v1/webhooks", body, content_type=FORM)
    assert created.status_code == 201, created.content
    assert _json(created)["webhook"]["filter"] == {"outlet": "Main"}

    bad = api.post(
        "/api/v1/webhooks", urlencode({"payload_url": URL, "filter": "{outlet"}), content_type=FORM
    )
    assert bad.status_code == 400
    assert "not valid JSON" in str(_json(bad)["error"]["fields"]["filter"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"total": {"$gtt": 5}}, 'Unknown operator "$gtt" at "total"'),
        ({"a..b": 1}, 'Bad field path "a..b"'),
        ({"total": {"$gte": "lots"}}, '"$gte" at "total" needs a number'),
        ({"code": {"$regex": "(a)\\1"}}, '"$regex" at "code" is not a pattern we can run'),
        ({"code": {"$regex": "a" * 300}}, "at most 256 characters"),
        (["outlet"], "A filter is a JSON object"),
        ("not json", "not valid JSON"),
    ],
)
def test_it_refuses_a_bad_filter_with_a_400_naming_it_and_stores_nothing(
    api: Client, merchant: Merchant, http_allowed: None, spec: Any, message: str
) -> None:
    response = api.post(
        "/api/v1/webhooks", {"payload_url": URL, "filter": spec}, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    error = _json(response)["error"]
    assert error["code"] == "invalid_request"
    assert message in str(error["fields"]["filter"])
    assert not Endpoint.objects.filter(merchant=merchant).exists()

    endpoint = Endpoint.objects.create(merchant=merchant, url=URL, filter=MAIN_ONLY)
    response = api.patch(
        f"/api/v1/webhooks/{endpoint.public_id}",
        {"filter": spec, "description": "changed"},
        content_type="application/json",
    )
    assert response.status_code == 400
    endpoint.refresh_from_db()
    assert (endpoint.filter, endpoint.description) == (MAIN_ONLY, "")


def test_it_documents_the_filter_in_the_openapi_schema(api: Client) -> None:
    schema = api.get("/api/v1/openapi.json").json()
    components = schema["components"]["schemas"]
    for name in ("WebhookInputRequest", "PatchedWebhookInputRequest", "WebhookOutput"):
        field = components[name]["properties"]["filter"]
        assert field["type"] == "object"
        assert "$regex" in field["description"]


# --- the dashboard ------------------------------------------------------------------------


def test_it_adds_and_edits_a_webhook_with_a_filter(
    owner_client: Client, merchant: Merchant, webhook_form: Callable[..., dict[str, Any]]
) -> None:
    page = owner_client.get("/webhooks/add/").content.decode()
    assert "Filter" in page and "$regex" in page and "Test filter" in page

    response = owner_client.post(
        "/webhooks/add/", webhook_form(filter='{"outlet": {"$in": ["Main", "Airport"]}}')
    )
    assert response.status_code == 302
    endpoint = Endpoint.objects.get()
    assert endpoint.filter == {"outlet": {"$in": ["Main", "Airport"]}}
    detail = owner_client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert "&quot;$in&quot;" in detail

    edit = owner_client.get(f"/webhooks/{endpoint.public_id}/edit/").content.decode()
    assert "&quot;Airport&quot;" in edit
    assert '<option value="receipts.update" selected>' in edit  # Test filter's first choice
    owner_client.post(f"/webhooks/{endpoint.public_id}/edit/", webhook_form(filter=""))
    endpoint.refresh_from_db()
    assert endpoint.filter is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"total": {"$gtt": 5}}', "Unknown operator &quot;$gtt&quot; at &quot;total&quot;"),
        ('{"outlet": "Main"', "The filter is not valid JSON"),
        ('{"a..b": 1}', "Bad field path &quot;a..b&quot;"),
    ],
)
def test_it_shows_a_bad_filter_on_the_field_and_stores_nothing(
    owner_client: Client,
    merchant: Merchant,
    webhook_form: Callable[..., dict[str, Any]],
    text: str,
    message: str,
) -> None:
    response = owner_client.post("/webhooks/add/", webhook_form(filter=text))
    assert response.status_code == 200
    page = response.content.decode()
    field = page[page.index('for="id_filter"') : page.index('for="id_filter_event_type"')]
    assert message in field
    assert not Endpoint.objects.exists()

    endpoint = Endpoint.objects.create(merchant=merchant, url=URL, filter=MAIN_ONLY)
    owner_client.post(f"/webhooks/{endpoint.public_id}/edit/", webhook_form(filter=text))
    endpoint.refresh_from_db()
    assert endpoint.filter == MAIN_ONLY


def test_it_tests_a_filter_against_the_last_event_of_a_type_without_saving(
    owner_client: Client,
    merchant: Merchant,
    outsider_merchant: Merchant,
    webhook_form: Callable[..., dict[str, Any]],
) -> None:
    emit(merchant, "receipts.update", {"receipt_no": "R-1", "outlet": "Mall"})
    last = emit(merchant, "receipts.update", {"receipt_no": "R-2", "outlet": "Airport"})
    emit(outsider_merchant, "receipts.update", {"receipt_no": "X-1", "outlet": "Main"})
    endpoint = Endpoint.objects.create(merchant=merchant, url=URL, description="kept")

    def check(spec: str, type_name: str = "receipts.update") -> str:
        response = owner_client.post(
            f"/webhooks/{endpoint.public_id}/edit/",
            webhook_form(
                filter=spec, filter_event_type=type_name, check_filter="1", description="typed"
            ),
        )
        assert response.status_code == 200
        return response.content.decode()

    page = check('{"outlet": {"$in": ["Main", "Airport"]}}')
    assert "Matches" in page and last.public_id in page and "would be sent" in page
    assert "&quot;receipt_no&quot;: &quot;R-2&quot;" in page
    assert 'value="typed"' in page  # what was typed is still in the form
    assert "This field is required" not in page

    page = check('{"outlet": "Main"}')  # the outsider's Main event is not this merchant's
    assert "Does not match" in page and "would not be sent" in page

    assert "Unknown operator &quot;$gtt&quot;" in check('{"total": {"$gtt": 1}}')
    assert "You have no products.update event yet" in check("{}", "products.update")

    endpoint.refresh_from_db()
    assert (endpoint.filter, endpoint.description) == (None, "kept")  # nothing saved

    add = owner_client.post(
        "/webhooks/add/",
        webhook_form(url="", filter='{"outlet": "Airport"}', filter_event_type="receipts.update")
        | {"check_filter": "1"},
    ).content.decode()
    assert "Matches" in add
    assert not Endpoint.objects.exclude(pk=endpoint.pk).exists()


def test_it_answers_404_for_another_merchants_webhook(
    outsider: User, merchant: Merchant, webhook_form: Callable[..., dict[str, Any]]
) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url=URL, filter=MAIN_ONLY)
    client = Client()
    client.force_login(outsider)
    response = client.post(
        f"/webhooks/{endpoint.public_id}/edit/",
        webhook_form(filter="{}", filter_event_type="receipts.update", check_filter="1"),
    )
    assert response.status_code == 404


def test_it_shows_the_filter_read_only_in_the_admin(
    staff_client: Client, merchant: Merchant
) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url=URL, filter=BIG_SALES)
    page = staff_client.get(f"/admin/endpoints/endpoint/{endpoint.pk}/change/").content.decode()
    assert "$gte" in page
    assert 'name="filter"' not in page  # shown, not editable


def test_it_saves_whatever_event_type_the_test_filter_box_holds(
    owner_client: Client, webhook_form: Callable[..., dict[str, Any]]
) -> None:
    response = owner_client.post(
        "/webhooks/add/", webhook_form(filter_event_type="retired.type", filter="")
    )
    assert response.status_code == 302
    assert Endpoint.objects.get().filter is None
