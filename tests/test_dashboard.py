"""The merchant dashboard, through Django's test client: what a merchant sees and can do."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiKey, Merchant, User
from catalogue.models import Category, EventType
from deliveries import emit
from deliveries.engine import disable_endpoint, send_test
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from tests.conftest import PASSWORD, Answer, Receiver
from tests.conftest import webhook_form_data as form_data

BASIC_AUTH_PASSWORD = "pa55-w0rd-nobody-sees"


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def make_delivery(
    endpoint: Endpoint, status: str = "succeeded", type_name: str = "receipts.update", **fields: Any
) -> Delivery:
    event = Event.objects.create_event(endpoint.merchant, type_name, {"receipt_no": "R-1"})
    fields.setdefault("attempts", 1)
    return Delivery.objects.create(
        merchant=endpoint.merchant, event=event, endpoint=endpoint, status=status, **fields
    )


def flashes(client: Client, response: Any) -> list[str]:
    """The flash messages shown on the page the response leads to, as the user reads them."""
    while response.status_code in (301, 302):
        response = client.get(response["Location"])
    page = response.content.decode()
    return [
        html.unescape(m)
        for m in re.findall(r'<div class="message [^"]+" role="\w+">(.*?)</div>', page)
    ]


def all_done() -> bool:
    return not Delivery.objects.filter(status__in=["pending", "delivering"]).exists()


# --- logging in ------------------------------------------------------------------------------


def test_it_sends_anonymous_users_to_the_login_page(db: None) -> None:
    response = Client().get("/webhooks/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/webhooks/"


def test_it_logs_in_and_out(owner: User) -> None:
    client = Client()
    response = client.post("/accounts/login/", {"username": "owner", "password": PASSWORD})
    assert response["Location"] == "/webhooks/"
    assert "Webhook Management" in client.get("/webhooks/").content.decode()

    response = client.post("/accounts/logout/")
    assert response["Location"] == "/accounts/login/"
    assert flashes(client, response) == ["You are signed out."]
    assert client.get("/webhooks/").status_code == 302


def test_it_refuses_a_wrong_password(owner: User) -> None:
    response = Client().post("/accounts/login/", {"username": "owner", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_it_logs_out_only_on_post(client: Client) -> None:
    assert client.get("/accounts/logout/").status_code == 405


def test_it_changes_the_password(client: Client, owner: User) -> None:
    response = client.post(
        "/accounts/password/",
        {
            "old_password": PASSWORD,
            "new_password1": "a-new-long-passphrase-42",
            "new_password2": "a-new-long-passphrase-42",
        },
    )
    assert flashes(client, response) == ["Your password was changed."]
    owner.refresh_from_db()
    assert owner.check_password("a-new-long-passphrase-42")
    assert client.get("/webhooks/").status_code == 200  # still signed in


def test_it_sends_staff_without_a_merchant_to_the_admin(staff_client: Client) -> None:
    assert staff_client.get("/")["Location"] == "/admin/"
    assert staff_client.get("/webhooks/").status_code == 404


# --- Webhook Management ----------------------------------------------------------------------


def test_it_explains_webhooks_when_there_are_none(client: Client) -> None:
    page = client.get("/webhooks/").content.decode()
    assert "<h1>Webhook Management</h1>" in page
    assert "No webhooks yet" in page
    assert "A webhook is a URL on your server" in page
    assert page.count(">Add webhook</a>") == 2


def test_it_lists_webhooks_with_masked_credentials_and_the_last_24_hours(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(
        f"https://shop:{BASIC_AUTH_PASSWORD}@127.0.0.1:9/hook",
        types=("receipts.update", "products.update"),
        category=Category.objects.get(slug="sales"),
        description="Accounting sync",
    )
    old = make_delivery(endpoint, "failed")
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=25))
    for status in ("succeeded", "succeeded", "succeeded", "failed"):
        make_delivery(endpoint, status)
    make_delivery(endpoint, "pending", attempts=0)  # not tried yet: no outcome to count

    page = client.get("/webhooks/").content.decode()

    assert "https://shop:****@127.0.0.1:9/hook" in page
    assert BASIC_AUTH_PASSWORD not in page
    row = page[page.index(f'id="row-{endpoint.public_id}"') :]
    assert "Accounting sync" in row and "Sales" in row
    assert "receipts.update" in row and "products.update" in row
    assert "Enabled" in row
    assert "75%" in row  # 3 of the 4 finished in the last 24 hours; the 25-hour-old one is out
    assert "5 deliveries" in row
    for label in (">Edit<", ">Delete<", ">Disable<", ">Send test<"):
        assert label in row


def test_it_shows_why_a_webhook_was_auto_disabled(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    disable_endpoint(endpoint, Endpoint.DisabledReason.GONE, "The receiver answered 410 Gone.")
    page = client.get("/webhooks/").content.decode()
    assert "Auto-disabled" in page
    assert "the receiver answered 410 Gone" in page
    assert ">Enable<" in page


def test_it_filters_webhooks_by_category_event_and_status(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    sales = make_endpoint("http://127.0.0.1:9/sales", category=Category.objects.get(slug="sales"))
    stock = make_endpoint(
        "http://127.0.0.1:9/stock",
        types=("inventory_levels.update",),
        category=Category.objects.get(slug="inventory"),
    )
    gone = make_endpoint("http://127.0.0.1:9/gone")
    disable_endpoint(gone, Endpoint.DisabledReason.GONE)
    off = make_endpoint("http://127.0.0.1:9/off")
    disable_endpoint(off)

    def listed(query: str) -> set[str]:
        page = client.get(f"/webhooks/?{query}").content.decode()
        return set(re.findall(r'id="row-(ep_\w+)"', page))

    assert listed("") == {sales.public_id, stock.public_id, gone.public_id, off.public_id}
    assert listed("category=inventory") == {stock.public_id}
    assert listed("event=inventory_levels.update") == {stock.public_id}
    assert listed("status=enabled") == {sales.public_id, stock.public_id}
    assert listed("status=auto-disabled") == {gone.public_id}
    assert listed("status=disabled") == {off.public_id}
    page = client.get("/webhooks/?category=payments").content.decode()
    assert "No webhooks match these filters" in page


def test_it_shows_a_teammate_the_same_webhooks(
    teammate: User, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    client = Client()
    client.force_login(teammate)
    assert endpoint.public_id in client.get("/webhooks/").content.decode()
    assert client.get(f"/webhooks/{endpoint.public_id}/").status_code == 200


# --- add and edit ----------------------------------------------------------------------------


def test_it_shows_the_add_form_with_events_grouped_by_category(client: Client) -> None:
    page = client.get("/webhooks/add/").content.decode()
    for label in ("Webhook URL", "Description", "Category", "Events", "Log mode", "Payload"):
        assert label in page
    for label in ("Retry policy", "Retries", "Cooldown (seconds)", "Timeout (seconds)"):
        assert label in page
    assert "<legend>Sales</legend>" in page and "<legend>Inventory</legend>" in page
    assert "Store only failed attempts" in page  # the one-line explanation of "Error"


def test_it_adds_a_webhook(client: Client, merchant: Merchant) -> None:
    response = client.post("/webhooks/add/", form_data())
    endpoint = Endpoint.objects.get()
    assert response["Location"] == f"/webhooks/{endpoint.public_id}/"
    assert flashes(client, response) == ["Webhook added: http://127.0.0.1:9/hook"]
    assert endpoint.merchant == merchant
    assert endpoint.category and endpoint.category.slug == "sales"
    assert [t.name for t in endpoint.event_types.all()] == ["receipts.update"]
    assert endpoint.secret.startswith("whsec_")


def test_it_adds_a_webhook_with_a_fixed_retry_policy_and_its_own_secret(client: Client) -> None:
    secret = "whsec_" + "A" * 44
    client.post(
        "/webhooks/add/",
        form_data(
            retry_policy="fixed",
            fixed_retries=3,
            fixed_cooldown_seconds=10,
            timeout_seconds=5,
            log_mode="error",
            payload_style="thin",
            secret=secret,
        ),
    )
    endpoint = Endpoint.objects.get()
    assert (endpoint.retry_policy, endpoint.fixed_retries, endpoint.fixed_cooldown_seconds) == (
        "fixed",
        3,
        10,
    )
    assert (endpoint.timeout_seconds, endpoint.log_mode, endpoint.payload_style) == (
        5,
        "error",
        "thin",
    )
    assert endpoint.secret == secret


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/hook", "Only http:// and https:// URLs are allowed."),
        ("not a url", "Enter a valid URL."),
        ("http://10.0.0.1/hook", "This address is not allowed: it is not a public address."),
        ("http://169.254.169.254/latest", "This address is not allowed"),
    ],
)
def test_it_shows_url_errors_on_the_field(client: Client, url: str, message: str) -> None:
    response = client.post("/webhooks/add/", form_data(url=url))
    assert response.status_code == 200
    page = response.content.decode()
    field = page[page.index('for="id_url"') : page.index('for="id_description"')]
    assert message in field
    assert not Endpoint.objects.exists()


def test_it_requires_https_when_the_operator_does(client: Client, settings: Any) -> None:
    settings.WEBHOOK_REQUIRE_HTTPS = True
    response = client.post("/webhooks/add/", form_data(url="http://127.0.0.1:9/hook"))
    assert "The URL must use https://." in response.content.decode()
    assert not Endpoint.objects.exists()


def test_it_requires_a_strong_secret(client: Client) -> None:
    response = client.post("/webhooks/add/", form_data(secret="short"))
    page = response.content.decode()
    assert "The secret must be at least 16 bytes long." in page
    assert not Endpoint.objects.exists()


def test_it_refuses_a_timeout_over_30_seconds(client: Client) -> None:
    response = client.post("/webhooks/add/", form_data(timeout_seconds=31))
    assert "less than or equal to 30" in response.content.decode()
    assert not Endpoint.objects.exists()


def test_it_edits_a_webhook_without_revealing_the_basic_auth_password(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(f"https://shop:{BASIC_AUTH_PASSWORD}@127.0.0.1:9/old")
    page = client.get(f"/webhooks/{endpoint.public_id}/edit/").content.decode()
    assert 'value="https://shop:****@127.0.0.1:9/old"' in page
    assert BASIC_AUTH_PASSWORD not in page
    assert "Signing secret" not in page  # secrets change by rotation once a webhook exists

    response = client.post(
        f"/webhooks/{endpoint.public_id}/edit/",
        form_data(
            url="https://shop:****@127.0.0.1:9/new",
            description="Renamed",
            event_types=[EventType.objects.get(name="products.update").pk],
        ),
    )
    assert flashes(client, response) == ["Webhook saved."]
    endpoint.refresh_from_db()
    assert endpoint.url == f"https://shop:{BASIC_AUTH_PASSWORD}@127.0.0.1:9/new"
    assert endpoint.description == "Renamed"
    assert [t.name for t in endpoint.event_types.all()] == ["products.update"]


def test_it_replaces_the_basic_auth_password_when_a_new_one_is_typed(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(f"https://shop:{BASIC_AUTH_PASSWORD}@127.0.0.1:9/hook")
    client.post(
        f"/webhooks/{endpoint.public_id}/edit/", form_data(url="https://shop:fresh@127.0.0.1:9/h")
    )
    endpoint.refresh_from_db()
    assert endpoint.url == "https://shop:fresh@127.0.0.1:9/h"


# --- delete, disable, enable -----------------------------------------------------------------


def test_it_deletes_a_webhook_after_a_confirmation_step(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    make_delivery(endpoint)
    confirm = client.get(f"/webhooks/{endpoint.public_id}/delete/confirm/").content.decode()
    assert "Delete this webhook?" in confirm
    assert "cannot be undone" in confirm
    assert client.get(f"/webhooks/{endpoint.public_id}/delete/").status_code == 405

    response = client.post(f"/webhooks/{endpoint.public_id}/delete/")
    assert response["Location"] == "/webhooks/"
    assert flashes(client, response) == ["Webhook deleted: http://127.0.0.1:9/hook"]
    assert not Endpoint.objects.exists()
    assert not Delivery.objects.exists()


def test_it_disables_and_enables_a_webhook(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    waiting = make_delivery(endpoint, "pending", next_attempt_at=timezone.now())

    response = client.post(
        f"/webhooks/{endpoint.public_id}/disable/", {"next": "/webhooks/?status=enabled"}
    )
    assert response["Location"] == "/webhooks/?status=enabled"
    assert "Webhook disabled." in flashes(client, response)[0]
    endpoint.refresh_from_db()
    assert (endpoint.is_enabled, endpoint.status_label) == (False, "Disabled")
    waiting.refresh_from_db()
    assert waiting.status == "cancelled"
    assert (
        "Disabled by the merchant"
        in client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    )

    response = client.post(f"/webhooks/{endpoint.public_id}/enable/")
    assert response["Location"] == f"/webhooks/{endpoint.public_id}/"
    assert flashes(client, response) == ["Webhook enabled. New events will be delivered to it."]
    endpoint.refresh_from_db()
    assert endpoint.is_enabled
    waiting.refresh_from_db()
    assert waiting.status == "cancelled"  # not retried unless asked


def test_it_retries_what_failed_meanwhile_when_enabling(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    started = timezone.now() - timedelta(hours=2)
    Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=started)
    failed = make_delivery(endpoint, "failed")
    endpoint.refresh_from_db()
    disable_endpoint(endpoint, Endpoint.DisabledReason.FAILING, "Every delivery failed.")

    page = client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert "Auto-disabled: failing continuously" in page
    assert "Also retry the deliveries that failed or were cancelled since" in page
    assert f'value="{started:%Y-%m-%dT%H:%M}"' in page

    response = client.post(
        f"/webhooks/{endpoint.public_id}/enable/",
        {"retry": "1", "enable-since": f"{started - timedelta(minutes=1):%Y-%m-%dT%H:%M}"},
    )
    assert flashes(client, response) == ["Webhook enabled, and 1 delivery scheduled again."]
    failed.refresh_from_db()
    assert failed.status == "pending"


# --- send test -------------------------------------------------------------------------------


def test_it_sends_a_test_and_shows_the_answer_inline(
    client: Client, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    receiver.default = Answer(200, b'{"received": true, "by": "till-42"}')
    endpoint = make_endpoint(receiver.url("/hook"))

    response = client.post(f"/webhooks/{endpoint.public_id}/test/", HTTP_X_INLINE="1")

    fragment = response.content.decode()
    assert "Test delivered" in fragment
    assert re.search(r'class="test-status">200<', fragment)
    assert re.search(r"<strong>\d+ ms</strong>", fragment)
    assert "till-42" in fragment  # the excerpt of the receiver's answer
    [request] = receiver.requests
    assert request.json()["type"] == "webhook.test"
    assert "<html" not in fragment  # a fragment, not a page


def test_it_sends_a_test_without_javascript_and_flashes_the_outcome(
    client: Client, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    receiver.default = Answer(404, b"no such hook")
    endpoint = make_endpoint(receiver.url("/hook"))
    response = client.post(f"/webhooks/{endpoint.public_id}/test/", {"next": "/webhooks/"})
    assert response["Location"] == "/webhooks/"
    [message] = flashes(client, response)
    assert message.startswith(f"Test sent to {receiver.url('/hook')}: failed: it answered 404 in ")


def test_it_says_the_answer_was_not_logged_when_the_log_mode_is_none(
    client: Client, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(receiver.url("/hook"), log_mode=Endpoint.LogMode.NONE)
    fragment = client.post(
        f"/webhooks/{endpoint.public_id}/test/", HTTP_X_INLINE="1"
    ).content.decode()
    assert "Test delivered" in fragment
    assert "log mode (None) did not store the attempt" in fragment


# --- the webhook's page: secret, chart, deliveries --------------------------------------------


def test_it_reveals_the_signing_secret_only_on_a_post(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    page = client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert endpoint.secret not in page
    assert ">Reveal<" in page
    assert client.get(f"/webhooks/{endpoint.public_id}/secret/reveal/").status_code == 405

    response = client.post(f"/webhooks/{endpoint.public_id}/secret/reveal/")
    assert endpoint.secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    fragment = client.post(
        f"/webhooks/{endpoint.public_id}/secret/reveal/", HTTP_X_INLINE="1"
    ).content.decode()
    assert endpoint.secret in fragment and "<html" not in fragment


def test_it_rotates_the_secret_with_a_24_hour_overlap(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    old = endpoint.secret
    response = client.post(f"/webhooks/{endpoint.public_id}/secret/rotate/")
    assert "The previous secret keeps signing too until" in flashes(client, response)[0]
    endpoint.refresh_from_db()
    assert endpoint.secret != old
    assert endpoint.signing_secrets() == [endpoint.secret, old]
    page = client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert "The previous secret also signs until" in page
    assert old not in page and endpoint.secret not in page


def test_it_charts_deliveries_per_hour(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    now = timezone.now()
    three_hours_ago = now - timedelta(hours=3)
    # In the order they happened: ids and creation times rise together.
    for status, created in [
        ("succeeded", now - timedelta(hours=30)),  # outside the window
        ("succeeded", three_hours_ago),
        ("failed", three_hours_ago),
        ("failed", three_hours_ago),
        ("succeeded", now),
        ("succeeded", now),
        ("failed", now),
    ]:
        delivery = make_delivery(endpoint, status)
        Delivery.objects.filter(pk=delivery.pk).update(created_at=created)

    page = client.get(f"/webhooks/{endpoint.public_id}/").content.decode()

    assert "<svg" in page
    rows = re.findall(
        r'<tr><th scope="row">(\d\d:\d\d)\u2013\d\d:\d\d</th><td>(\d+)</td><td>(\d+)</td>', page
    )
    assert len(rows) in (24, 25)
    hour = three_hours_ago.replace(minute=0)
    assert (f"{hour:%H:%M}", "1", "2") in rows
    assert rows[-1][1:] == ("2", "1")
    assert sum(int(s) + int(f) for _, s, f in rows) == 6
    assert "<strong>6</strong> deliveries" in page
    assert "<strong>50%</strong> succeeded" in page


def test_it_never_counts_all_of_an_endpoints_deliveries_on_its_page(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    """With millions of rows a COUNT over the endpoint's history would take seconds."""
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    make_delivery(endpoint)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/webhooks/{endpoint.public_id}/").status_code == 200
    counts = [
        q["sql"] for q in queries if "COUNT(" in q["sql"] and "deliveries_delivery" in q["sql"]
    ]
    assert counts
    assert all('"deliveries_delivery"."id" >=' in sql for sql in counts)
    assert not any("OFFSET" in q["sql"] for q in queries)


def test_it_pages_deliveries_newest_first_by_keyset(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    ids = [make_delivery(endpoint).public_id for _ in range(120)]
    url = f"/webhooks/{endpoint.public_id}/"

    def shown(page: str) -> list[str]:
        return re.findall(r'href="/deliveries/(dlv_\w+)/"', page)

    first = client.get(url).content.decode()
    assert shown(first) == ids[::-1][:50]
    older = re.search(r'href="\?before=(\d+)" rel="next"', first)
    assert older and "Newer" not in first
    second = client.get(f"{url}?before={older.group(1)}").content.decode()
    assert shown(second) == ids[::-1][50:100]
    third = re.search(r'href="\?before=(\d+)" rel="next"', second)
    assert third
    last = client.get(f"{url}?before={third.group(1)}").content.decode()
    assert shown(last) == ids[::-1][100:]
    assert "Older" not in last and "Newer" in last
    oldest = client.get(f"{url}?after=0").content.decode()
    assert shown(oldest) == ids[:50][::-1]
    newer = re.search(r'href="\?after=(\d+)" rel="prev"', second)
    assert newer
    assert shown(client.get(f"{url}?after={newer.group(1)}").content.decode()) == ids[::-1][:50]
    assert client.get(f"{url}?before=-5").status_code == 200
    assert client.get(f"{url}?before=abc").status_code == 200


def test_it_filters_deliveries_by_status_and_event_type(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(
        "http://127.0.0.1:9/hook", types=("receipts.update", "products.update")
    )
    failed = make_delivery(endpoint, "failed")
    product = make_delivery(endpoint, "succeeded", "products.update")
    receipt = make_delivery(endpoint, "succeeded")
    url = f"/webhooks/{endpoint.public_id}/"

    page = client.get(f"{url}?status=failed").content.decode()
    assert failed.public_id in page and receipt.public_id not in page
    assert ">Retry<" in page
    page = client.get(f"{url}?event_type=products.update").content.decode()
    assert product.public_id in page and receipt.public_id not in page
    page = client.get(f"{url}?status=cancelled").content.decode()
    assert "No deliveries match these filters." in page


def test_it_retries_a_failed_delivery_after_the_receiver_recovers(
    transactional_db: None,
    owner: User,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    client = Client()
    client.force_login(owner)
    make_endpoint(receiver.url("/hook"))
    receiver.default = Answer(404, b"not yet")
    emit(merchant, "receipts.update", {"receipt_no": "R-7"})
    work(until=all_done)
    delivery = Delivery.objects.get()
    assert delivery.status == "failed"

    receiver.default = Answer(200, b"thanks")
    response = client.post(f"/deliveries/{delivery.public_id}/retry/")
    assert flashes(client, response) == [f"Delivery {delivery.public_id} will be retried now."]
    work(until=all_done)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 200)
    page = client.get(f"/deliveries/{delivery.public_id}/").content.decode()
    assert "Attempt 1" in page and "Attempt 2" in page
    assert "not yet" in page and "thanks" in page
    assert "webhook-signature" in page


def test_it_retries_all_failed_deliveries_since_a_time(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    recent = [make_delivery(endpoint, "failed") for _ in range(2)]
    old = make_delivery(endpoint, "failed")
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    make_delivery(endpoint, "succeeded")

    since = timezone.now() - timedelta(hours=1)
    response = client.post(
        f"/webhooks/{endpoint.public_id}/retry-failed/", {"since": f"{since:%Y-%m-%dT%H:%M}"}
    )
    assert flashes(client, response) == ["2 deliveries scheduled again."]
    assert {d.status for d in Delivery.objects.filter(pk__in=[d.pk for d in recent])} == {"pending"}
    old.refresh_from_db()
    assert old.status == "failed"

    response = client.post(
        f"/webhooks/{endpoint.public_id}/retry-failed/", {"since": f"{since:%Y-%m-%dT%H:%M}"}
    )
    assert flashes(client, response) == ["No failed deliveries since then: nothing to retry."]


def test_it_does_not_retry_deliveries_of_a_disabled_webhook(
    client: Client, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    failed = make_delivery(endpoint, "failed")
    disable_endpoint(endpoint)
    response = client.post(f"/deliveries/{failed.public_id}/retry/")
    assert flashes(client, response) == [
        "This webhook is disabled: enable it to retry its deliveries."
    ]
    failed.refresh_from_db()
    assert failed.status == "failed"


# --- delivery detail -------------------------------------------------------------------------


def test_it_shows_every_attempt_with_secrets_masked(
    client: Client, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    receiver.default = Answer(503, b'{"error": "maintenance"}', {"x-request-id": "abc-123"})
    endpoint = make_endpoint(
        receiver.url("/hook").replace("http://", f"http://shop:{BASIC_AUTH_PASSWORD}@"),
        retry_policy=Endpoint.RetryPolicy.FIXED,
        fixed_retries=0,
    )
    delivery = send_test(endpoint)
    page = client.get(f"/deliveries/{delivery.public_id}/").content.decode()

    assert "Attempt 1" in page and "Failed" in page
    assert "POST http://shop:****@127.0.0.1" in page
    assert BASIC_AUTH_PASSWORD not in page
    assert "webhook-signature" in page and "x-request-id" in page and "abc-123" in page
    assert "&quot;error&quot;: &quot;maintenance&quot;" in page  # the body, indented JSON
    assert "Status <code>503</code>" in page


@pytest.mark.parametrize(
    ("log_mode", "says"),
    [("none", "this webhook's log mode is None"), ("error", "stores failed attempts only")],
)
def test_it_says_when_the_log_mode_stored_no_attempts(
    client: Client,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    log_mode: str,
    says: str,
) -> None:
    endpoint = make_endpoint(receiver.url("/hook"), log_mode=log_mode)
    delivery = send_test(endpoint)
    page = client.get(f"/deliveries/{delivery.public_id}/").content.decode()
    assert "No attempts were stored" in page and says in page


# --- events ----------------------------------------------------------------------------------


def test_it_lists_events_newest_first_and_filters_by_type(
    client: Client, merchant: Merchant
) -> None:
    receipts = [Event.objects.create_event(merchant, "receipts.update", {}) for _ in range(3)]
    product = Event.objects.create_event(merchant, "products.update", {})
    page = client.get("/events/").content.decode()
    shown = re.findall(r'href="/events/(evt_\w+)/"', page)
    assert shown == [product.public_id] + [e.public_id for e in receipts[::-1]]
    page = client.get("/events/?type=products.update").content.decode()
    assert re.findall(r'href="/events/(evt_\w+)/"', page) == [product.public_id]
    page = client.get("/events/?type=customers.update").content.decode()
    assert "No customers.update events" in page


def test_it_explains_the_events_page_when_empty(client: Client) -> None:
    assert "No events yet" in client.get("/events/").content.decode()


def test_it_pages_events_by_keyset(client: Client, merchant: Merchant) -> None:
    events = [Event.objects.create_event(merchant, "receipts.update", {}) for _ in range(55)]
    page = client.get("/events/").content.decode()
    older = re.search(r'href="\?before=(\d+)" rel="next"', page)
    assert older
    page = client.get(f"/events/?before={older.group(1)}").content.decode()
    assert re.findall(r'href="/events/(evt_\w+)/"', page) == [e.public_id for e in events[:5][::-1]]


def test_it_shows_an_event_with_each_webhook_and_retry_and_resends_it(
    transactional_db: None,
    owner: User,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
    settings: Any,
) -> None:
    settings.WEBHOOK_RETRY_BASE_SECONDS = 1
    client = Client()
    client.force_login(owner)
    endpoint = make_endpoint(receiver.url("/hook"))
    receiver.answers = [Answer(500, b"boom")]
    event = emit(merchant, "receipts.update", {"receipt_no": "R-9", "total": "4.20"})
    work(until=all_done)

    page = client.get(f"/events/{event.public_id}/").content.decode()
    assert endpoint.masked_url in page
    assert "Succeeded" in page
    assert "(retry)" in page  # attempt 2 of the delivery
    assert "&quot;receipt_no&quot;: &quot;R-9&quot;" in page

    # The delivery succeeded, so it is sent again only when asked to.
    response = client.post(f"/events/{event.public_id}/resend/", {"include_succeeded": "1"})
    assert flashes(client, response) == [
        f"Event {event.public_id} will be sent again to 1 webhook."
    ]
    work(until=all_done)
    assert len(receiver.requests) == 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {event.public_id}


def test_it_says_when_an_event_went_nowhere(client: Client, merchant: Merchant) -> None:
    event = Event.objects.create_event(merchant, "receipts.update", {})
    page = client.get(f"/events/{event.public_id}/").content.decode()
    assert "No webhook was subscribed to this event" in page
    # Resend is still offered: it reaches the webhooks that subscribe to the type now.
    assert "Resend this event?" in page


# --- API keys --------------------------------------------------------------------------------


def test_it_creates_an_api_key_and_shows_it_once(client: Client, merchant: Merchant) -> None:
    response = client.post("/api-keys/create/", {"name": "Back-office sync"})
    page = response.content.decode()
    raw = re.search(r'id="new-api-key" class="secret">(whk_[\w-]+)<', page)
    assert raw
    assert "It will not be shown again." in page
    assert 'data-copy="new-api-key"' in page
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.authenticate(raw.group(1))
    assert key and key.merchant == merchant and key.name == "Back-office sync"

    listing = client.get("/api-keys/").content.decode()
    assert "Back-office sync" in listing and key.prefix in listing and "Active" in listing
    assert raw.group(1) not in listing


def test_it_requires_a_name_for_an_api_key(client: Client) -> None:
    response = client.post("/api-keys/create/", {"name": ""})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_it_revokes_an_api_key_after_confirmation(
    client: Client, merchant: Merchant, owner: User
) -> None:
    key, raw = ApiKey.issue(merchant, "Till 3", created_by=owner)
    page = client.get("/api-keys/").content.decode()
    assert f'href="/api-keys/{key.pk}/revoke/confirm/"' in page
    confirm = client.get(f"/api-keys/{key.pk}/revoke/confirm/").content.decode()
    assert "Revoke “Till 3”?" in confirm

    response = client.post(f"/api-keys/{key.pk}/revoke/")
    assert flashes(client, response) == ["API key “Till 3” revoked. It no longer works."]
    assert ApiKey.objects.authenticate(raw) is None
    assert "Revoked" in client.get("/api-keys/").content.decode()


def test_it_links_the_api_keys_page_in_the_navigation(client: Client) -> None:
    page = client.get("/webhooks/").content.decode()
    assert 'href="/api-keys/"' in page and 'href="/events/"' in page


def test_it_protects_every_form_with_csrf(
    owner: User, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(f"/webhooks/{endpoint.public_id}/disable/").status_code == 403
    page = client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    forms = re.findall(r'<form method="post".*?</form>', page, re.S)
    assert forms and all("csrfmiddlewaretoken" in form for form in forms)
