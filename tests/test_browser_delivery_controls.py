"""Filters and custom headers in a real browser: the form, "Test filter", Reveal, and a
delivery through a real worker to a real receiver that checks what arrives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Merchant, User
from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import CHROMIUM, Receiver
from tests.test_browser import log_in, shoot

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test)"),
]

API_KEY = "rcv_live_5f2b7c9d0e1a4b3c"


def done() -> bool:
    return not Delivery.objects.filter(status__in=["pending", "delivering"]).exists()


def test_it_sets_a_filter_and_headers_tests_the_filter_and_delivers_by_them(
    page: Any,
    owner: User,
    merchant: Merchant,
    receiver: Receiver,
    work: Callable[..., None],
) -> None:
    last = emit(merchant, "receipts.update", {"receipt_no": "R-0", "outlet": "Airport"})
    log_in(page)
    page.goto("/webhooks/add/")
    page.get_by_label("Webhook URL").fill(receiver.url("/pos"))
    page.get_by_label("receipts.update").check()
    page.locator("#id_filter").fill('{"outlet": {"$in": ["Main", "Airport"]}}')
    page.get_by_label("Custom headers").fill(f"X-Api-Key: {API_KEY}\nX-Outlet-Group: north")
    page.get_by_label("Send a test now").uncheck()

    # Test filter: the answer shows under the field, and what was typed stays.
    page.get_by_label("Your last event of type").select_option("receipts.update")
    page.get_by_role("button", name="Test filter").click()
    result = page.locator("#filter-check")
    expect(result).to_contain_text("Matches")
    expect(result).to_contain_text(last.public_id)
    expect(page.get_by_label("Webhook URL")).to_have_value(receiver.url("/pos"))
    shoot(page, "controls-01-test-filter")
    assert not Endpoint.objects.exists()

    page.locator("#id_filter").fill('{"outlet": {"$gtt": 1}}')
    page.get_by_role("button", name="Test filter").click()
    expect(page.locator("#filter-check")).to_contain_text('Unknown operator "$gtt" at "outlet"')

    page.locator("#id_filter").fill('{"outlet": {"$in": ["Main", "Airport"]}}')
    page.get_by_label("Custom headers").fill(f"X-Api-Key: {API_KEY}\nX-Outlet-Group: north")
    page.get_by_label("Send a test now").uncheck()
    page.get_by_role("button", name="Add webhook").click()
    expect(page.get_by_role("status").first).to_contain_text("Webhook added")
    endpoint = Endpoint.objects.get()

    # The detail page shows the header masked until Reveal (inline, a POST).
    settings_card = page.locator("#headers-" + endpoint.public_id)
    expect(settings_card).to_contain_text("X-Api-Key: ****4b3c")
    expect(page.locator("body")).not_to_contain_text(API_KEY)
    page.get_by_role("button", name="Reveal").first.click()
    expect(settings_card).to_contain_text(f"X-Api-Key: {API_KEY}")
    shoot(page, "controls-02-detail")

    emit(merchant, "receipts.update", {"receipt_no": "R-1", "outlet": "Main"})
    emit(merchant, "receipts.update", {"receipt_no": "R-2", "outlet": "Mall"})
    work(until=done)
    assert [r.json()["data"]["receipt_no"] for r in receiver.requests] == ["R-1"]
    assert receiver.requests[0].headers["x-api-key"] == API_KEY
    assert receiver.requests[0].headers["x-outlet-group"] == "north"


def test_it_sets_a_rate_limit_and_an_ordering_key_and_shows_what_a_delivery_waits_for(
    page: Any, owner: User, merchant: Merchant
) -> None:
    log_in(page)
    page.goto("/webhooks/add/")
    page.get_by_label("Webhook URL").fill("http://127.0.0.1:9/hook")
    page.get_by_label("receipts.update").check()
    page.get_by_label("Send a test now").uncheck()
    expect(page.locator("#id_ordering_key_helptext")).to_contain_text("code for products")

    # A bad key is shown on its field, and what was typed stays.
    page.get_by_label("Rate limit (per second)").fill("20")
    page.get_by_label("Ordering key").fill("invoice number")
    page.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#id_ordering_key_error")).to_contain_text("is not a dotted path")
    expect(page.get_by_label("Rate limit (per second)")).to_have_value("20")
    assert not Endpoint.objects.exists()

    page.get_by_label("Ordering key").fill("code")
    page.get_by_role("button", name="Add webhook").click()
    expect(page.get_by_role("status").first).to_contain_text("Webhook added")
    endpoint = Endpoint.objects.get()
    assert (endpoint.rate_limit, endpoint.ordering_key) == (20, "code")
    settings_card = page.locator("#settings-title").locator("..")
    expect(settings_card).to_contain_text("At most 20 deliveries per second")
    expect(settings_card).to_contain_text("code: deliveries with the same value go one at a time")

    # Two deliveries of one product code: the second waits for the first (set as the engine
    # stores them, with no worker running, so both stay unfinished).
    first, second = (emit(merchant, "receipts.update", {"code": "P-1"}) for _ in range(2))
    Delivery.objects.filter(event__in=[first, second]).update(ordering_value='"P-1"')
    Delivery.objects.filter(event=first).update(status="delivering")
    ahead = Delivery.objects.get(event=first)
    page.reload()
    waiting = page.locator(".waiting-for")
    expect(waiting).to_have_text(f"Waiting for {ahead.public_id} of the same code")
    shoot(page, "controls-03-waiting-for")
    waiting.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(ahead.public_id)

    # A failed ordered delivery offers both retries, and says what each does.
    Delivery.objects.filter(event=first).update(status="failed", attempts=3)
    page.goto(f"/deliveries/{ahead.public_id}/")
    expect(page.get_by_role("button", name="Retry in its place")).to_be_visible()
    expect(page.locator(".retry-delivery .hint")).to_contain_text(
        "Retry sends it after the deliveries of the same code (P-1) that are waiting now"
    )
    shoot(page, "controls-04-retry-ordered")
