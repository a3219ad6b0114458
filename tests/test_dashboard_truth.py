"""The dashboard tells the truth (issue 15, items 1-5, 7, 10 and 14), in a real browser.

Every test runs at 1366 and 1920 px, the widths merchants' office screens have, and keeps
a screenshot of what it checked under var/screenshots/truth-*.png.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, Merchant, User
from deliveries.engine import disable_endpoint
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver
from tests.test_browser import CHROMIUM, SCREENSHOTS, expect, log_in

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium"),
]

WIDTHS = [1366, 1920]


@pytest.fixture(params=WIDTHS, ids=[f"{w}px" for w in WIDTHS])
def width(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture
def screen(page: Any, width: int) -> Any:
    page.set_viewport_size({"width": width, "height": 900})
    return page


def shoot(page: Any, name: str, width: int) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"truth-{name}-{width}.png"), full_page=True)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield port


def _delivery(endpoint: Endpoint, **fields: Any) -> Delivery:
    event = Event.objects.create_event(endpoint.merchant, "receipts.update", {"total": "9.99"})
    return Delivery.objects.create(
        merchant=endpoint.merchant, event=event, endpoint=endpoint, **fields
    )


# --- 1. the success rate and "last delivery" count what is retrying ---------------------------


def test_it_counts_retrying_deliveries_and_failed_attempts(
    screen: Any, width: int, owner: User, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/pos")
    now = timezone.now()
    _delivery(
        endpoint,
        status="succeeded",
        attempts=1,
        last_status_code=200,
        last_attempt_at=now - timedelta(minutes=5),
        completed_at=now - timedelta(minutes=5),
    )
    for _ in range(2):
        _delivery(
            endpoint,
            status="pending",
            attempts=3,
            last_status_code=500,
            last_error="HTTP 500",
            last_attempt_at=now,
            next_attempt_at=now + timedelta(seconds=30),
        )
    log_in(screen)
    row = screen.locator(f"#row-{endpoint.public_id}")
    # 1 of 3 tried deliveries succeeded; the 2 others failed 3 times each and are retrying.
    expect(row).to_contain_text("33.3% succeeded")
    expect(row).to_contain_text("2 retrying")
    expect(row).to_contain_text("6 failed attempts")
    last = row.locator("td.cell-last")
    expect(last).to_contain_text("Failed")
    expect(last).to_contain_text("500")
    expect(last).to_contain_text("retrying")
    expect(last).not_to_contain_text("Pending")
    shoot(screen, "1-list", width)

    screen.goto(f"/webhooks/{endpoint.public_id}/")
    stats = screen.locator("#day-stats .stats")
    expect(stats).to_contain_text("33.3% succeeded")
    expect(stats).to_contain_text("2 retrying")
    expect(stats).to_contain_text("6 failed attempts")
    shoot(screen, "1-detail", width)


# --- 2. an inline test shows up at once in the table, the chart and the list --------------------


def test_it_refreshes_the_page_after_an_inline_test(
    screen: Any,
    width: int,
    owner: User,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
) -> None:
    endpoint = make_endpoint(receiver.url("/pos"))
    log_in(screen)
    row = screen.locator(f"#row-{endpoint.public_id}")
    expect(row).to_contain_text("No deliveries")
    row.get_by_role("button", name="Send test").click()
    expect(screen.locator(f"#test-{endpoint.public_id}")).to_contain_text("Test delivered")
    expect(row.locator("td.cell-last")).to_contain_text("Succeeded")
    expect(row).to_contain_text("1 delivery")
    shoot(screen, "2-list", width)

    screen.goto(f"/webhooks/{endpoint.public_id}/")
    screen.locator(".page-head").get_by_role("button", name="Send test").click()
    expect(screen.locator(f"#test-{endpoint.public_id}")).to_contain_text("Test delivered")
    expect(screen.locator("#day-stats .stats")).to_contain_text("2 deliveries")
    expect(screen.locator("#deliveries-table")).not_to_contain_text("No deliveries")
    expect(screen.locator("#deliveries-table tbody tr")).to_have_count(2)
    expect(screen.locator("#day-stats rect.bar-succeeded")).not_to_have_count(0)
    shoot(screen, "2-detail", width)


# --- 3. a test on a disabled webhook is refused, and nothing is left pending --------------------


def test_it_refuses_a_test_on_a_disabled_webhook(
    screen: Any, width: int, owner: User, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(receiver.url("/pos"))
    disable_endpoint(endpoint)
    log_in(screen)
    screen.goto(f"/webhooks/{endpoint.public_id}/")
    screen.locator(".page-head").get_by_role("button", name="Send test").click()
    result = screen.locator(f"#test-{endpoint.public_id}")
    expect(result).to_contain_text("This webhook is disabled, so no test was sent")
    expect(result).not_to_contain_text("Test failed")
    shoot(screen, "3-disabled", width)
    # The API refuses it the same way.
    api = Client(headers={"authorization": f"Bearer {ApiKey.issue(endpoint.merchant, 'POS')[1]}"})
    response = api.post(f"/api/v1/webhooks/{endpoint.public_id}/test")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "webhook_disabled"
    assert not Delivery.objects.exists()
    assert receiver.requests == []


# --- 4. a 410 on a test says it disabled the webhook; the e-mail tells what really happened -----


def test_it_says_a_410_just_disabled_the_webhook(
    screen: Any,
    width: int,
    owner: User,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    receiver.default = Answer(410, b"gone")
    endpoint = make_endpoint(receiver.url("/pos"))
    mail.outbox.clear()
    log_in(screen)
    screen.goto(f"/webhooks/{endpoint.public_id}/")
    screen.locator(".page-head").get_by_role("button", name="Send test").click()
    result = screen.locator(f"#test-{endpoint.public_id}")
    expect(result).to_contain_text("410")
    expect(result).to_contain_text("this webhook was just disabled")
    expect(screen.locator("#endpoint-status")).to_contain_text("Auto-disabled")
    expect(screen.locator("#deliveries-table")).to_contain_text("webhook.test")
    shoot(screen, "4-gone", width)

    work()  # the e-mail is a job of its own, off the sending path
    [message] = mail.outbox
    assert "cancelled" in message.body
    assert "kept" not in message.body
    assert message.body.lower().count("410 gone") == 1, message.body


# --- 5. no answer is not "an empty body" ------------------------------------------------------


def test_it_says_there_was_no_answer_when_the_connection_fails(
    screen: Any,
    width: int,
    owner: User,
    receiver: Receiver,
    closed_port: int,
    make_endpoint: Callable[..., Endpoint],
) -> None:
    refused = make_endpoint(f"http://127.0.0.1:{closed_port}/pos")
    receiver.default = Answer(200, b"late", delay=2.5)
    slow = make_endpoint(receiver.url("/slow"), timeout_seconds=1)
    log_in(screen)
    for endpoint, name in ((refused, "refused"), (slow, "timeout")):
        screen.goto(f"/webhooks/{endpoint.public_id}/")
        screen.locator(".page-head").get_by_role("button", name="Send test").click()
        result = screen.locator(f"#test-{endpoint.public_id}")
        expect(result).to_contain_text("No answer", timeout=15_000)
        expect(result).not_to_contain_text("empty body")
        shoot(screen, f"5-{name}", width)
        # The delivery's own page says the same.
        result.get_by_role("link", name="View delivery").click()
        response = screen.locator("section.attempt")
        expect(response).to_contain_text("No answer")
        expect(response).not_to_contain_text("Empty body")


# --- 7. the layout holds at office widths, and the merchant id is shown ------------------------


def test_it_keeps_the_header_on_one_row_and_urls_readable(
    screen: Any,
    width: int,
    owner: User,
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
) -> None:
    # A long name and user name, and a row with a long URL and many events: what real
    # merchants have, and what made the header wrap and the URL column collapse.
    merchant.name = "Northside Coffee Roasters & Bakery Ltd"
    merchant.save()
    owner.email = "maria.keller@northside-coffee.example"
    owner.save()
    long_url = "https://hooks.example-merchant-backoffice.com/integrations/pos/" + "x" * 90
    make_endpoint(
        long_url,
        types=(
            "receipts.update",
            "inventory_levels.update",
            "products.update",
            "customers.update",
            "credit_note.update",
        ),
        description="Back office sync for the accounting team, all shops",
    )
    log_in(screen)
    header = screen.locator("header.topbar").bounding_box()
    nav = screen.locator(".mainnav").bounding_box()
    account = screen.locator(".account").bounding_box()
    brand = screen.locator(".brand").bounding_box()
    assert header["height"] <= 64, header
    # One row: the brand, the navigation and the account links share a line.
    assert abs((nav["y"] + nav["height"] / 2) - (brand["y"] + brand["height"] / 2)) < 6
    assert abs((account["y"] + account["height"] / 2) - (brand["y"] + brand["height"] / 2)) < 6
    assert nav["y"] > header["y"] + 4  # not stuck to the top edge

    overflow = screen.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert overflow[0] <= overflow[1], overflow
    main = screen.locator("main").bounding_box()
    for selector in (".page-head", ".table-wrap", "form.filters"):
        box = screen.locator(selector).first.bounding_box()
        assert box["x"] + box["width"] <= main["x"] + main["width"] + 0.5, selector

    url = screen.locator("td.cell-url a.url").bounding_box()
    # Not one character per line: about 30 characters or more to a line of the 153.
    assert url["width"] > 200, url
    assert url["height"] < 8 * 24, url

    # The merchant's own id, which emit_event and the API need, is on the page.
    expect(screen.get_by_text(merchant.public_id).first).to_be_visible()
    shoot(screen, "7-list", width)
    screen.goto("/api-keys/")
    expect(screen.get_by_text(merchant.public_id).first).to_be_visible()


# --- 10. resend and rotate ask first; resend skips webhooks that already have the event --------


def test_it_confirms_resend_and_skips_webhooks_that_succeeded(
    screen: Any,
    width: int,
    owner: User,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    from deliveries import emit

    good = make_endpoint(receiver.url("/good"))
    event = emit(merchant, "receipts.update", {"total": "9.99"})
    work(until=lambda: Delivery.objects.filter(status="succeeded").exists())
    # A webhook added after the event happened.
    late = make_endpoint(receiver.url("/late"))
    log_in(screen)
    screen.goto(f"/events/{event.public_id}/")
    resend = screen.get_by_role("link", name="Resend")
    assert "primary" not in (resend.get_attribute("class") or "")
    resend.click()
    dialog = screen.get_by_role("dialog")
    expect(dialog).to_contain_text("Resend this event?")
    expect(dialog).to_contain_text("1 webhook that gets")
    shoot(screen, "10-resend", width)
    dialog.get_by_role("button", name="Resend").click()
    expect(screen.get_by_role("status").first).to_contain_text("sent again to 1 webhook")
    work(until=lambda: Delivery.objects.filter(endpoint=late, status="succeeded").exists())
    assert [r.path for r in receiver.requests] == ["/good", "/late"]
    assert Delivery.objects.get(endpoint=good).attempts == 1

    # An event nobody was subscribed to can be resent to today's subscribers.
    orphan = emit(merchant, "customers.update", {"id": "c1"})
    assert not orphan.deliveries.exists()
    everything = make_endpoint(receiver.url("/all"), types=())
    screen.goto(f"/events/{orphan.public_id}/")
    screen.get_by_role("link", name="Resend").click()
    screen.get_by_role("dialog").get_by_role("button", name="Resend").click()
    expect(screen.get_by_role("status").first).to_contain_text("sent again to 1 webhook")
    assert orphan.deliveries.get().endpoint == everything


def test_it_confirms_before_rotating_the_secret(
    screen: Any, width: int, owner: User, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/pos")
    secret = endpoint.secret
    log_in(screen)
    screen.goto(f"/webhooks/{endpoint.public_id}/")
    screen.get_by_role("link", name="Rotate secret").click()
    dialog = screen.get_by_role("dialog")
    expect(dialog).to_contain_text("Rotate the signing secret?")
    shoot(screen, "10-rotate", width)
    dialog.get_by_role("button", name="Cancel").click()
    endpoint.refresh_from_db()
    assert endpoint.secret == secret
    screen.get_by_role("link", name="Rotate secret").click()
    screen.get_by_role("dialog").get_by_role("button", name="Rotate secret").click()
    expect(screen.get_by_role("status").first).to_contain_text("Signing secret rotated")
    endpoint.refresh_from_db()
    assert endpoint.secret != secret


# --- 14. SalesPlay's sample POST on setup ----------------------------------------------------


def test_it_sends_a_test_on_save_and_shows_its_outcome(
    screen: Any, width: int, owner: User, receiver: Receiver
) -> None:
    receiver.default = Answer(200, b"ok")
    log_in(screen)
    screen.goto("/webhooks/add/")
    screen.get_by_label("Webhook URL").fill(receiver.url("/salesplay"))
    screen.get_by_label("inventory_levels.update").check()
    test_box = screen.get_by_label("Send a test now")
    expect(test_box).to_be_checked()
    screen.get_by_role("button", name="Add webhook").click()
    messages = screen.get_by_role("status")
    expect(messages.first).to_contain_text("Webhook added")
    expect(screen.locator("main")).to_contain_text("answered 200")
    shoot(screen, "14-saved", width)
    [request] = receiver.requests
    assert request.json()["type"] == "webhook.test"

    # Unchecked: nothing is sent.
    endpoint = Endpoint.objects.get()
    screen.goto(f"/webhooks/{endpoint.public_id}/edit/")
    screen.get_by_label("Send a test now").uncheck()
    screen.get_by_role("button", name="Save webhook").click()
    expect(screen.get_by_role("status").first).to_contain_text("Webhook saved")
    assert len(receiver.requests) == 1
