"""Merchant tooling in a real browser: Playwright driving Debian's Chromium against live_server.

From an empty merchant to a signed request seen on the inspector page, with no receiver of
the merchant's own: the inspector on the live server is the receiver. Screenshots of the
pages go to var/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Merchant, User
from catalogue.models import Category, EventType
from deliveries import emit
from deliveries.engine import send_test
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import CHROMIUM, Receiver
from tests.test_browser import log_in, shoot
from tooling.models import Inspector, LoyaltyApp

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test)"),
]


def test_it_goes_from_an_empty_merchant_to_a_signed_request_on_the_inspector(
    page: Any, owner: User, merchant: Merchant
) -> None:
    log_in(page)
    expect(page.get_by_text("No webhooks yet")).to_be_visible()

    # Create an inspector.
    page.get_by_role("link", name="Inspector", exact=True).click()
    expect(page.get_by_text("No inspectors yet")).to_be_visible()
    shoot(page, "20-inspector-empty")
    page.get_by_label("Name").fill("Till try-out")
    page.get_by_role("button", name="Create inspector").click()
    expect(page.get_by_role("status").first).to_contain_text("Inspector “Till try-out” created")
    inspector = Inspector.objects.get(merchant=merchant)
    expect(page.locator("#catch-url")).to_contain_text(f"/catch/{inspector.token}/")
    expect(page.get_by_text("No requests yet")).to_be_visible()

    # Use it as a webhook URL, and send that webhook a test.
    page.get_by_role("button", name="Use as webhook URL").click()
    expect(page.get_by_role("status").first).to_contain_text("Webhook added")
    endpoint = Endpoint.objects.get(merchant=merchant)
    expect(page).to_have_url(re.compile(rf"/webhooks/{endpoint.public_id}/$"))
    page.locator(".page-head").get_by_role("button", name="Send test").click()
    result = page.locator(f"#test-{endpoint.public_id}")
    expect(result).to_contain_text("Test delivered")
    expect(result.locator(".test-status")).to_have_text("200")

    # The inspector shows the request, and that its signature verifies.
    page.get_by_role("link", name="Inspector", exact=True).click()
    page.get_by_role("link", name="Till try-out").click()
    request = page.locator("#inspector-requests article").first
    expect(request).to_contain_text("Signature valid")
    expect(request).to_contain_text(f"Verified with the secret of webhook {endpoint.public_id}")
    expect(request).to_contain_text('"type": "webhook.test"')
    shoot(page, "21-inspector-request")

    # Make it fail: the next delivery gets a 500, and appears without a reload.
    page.get_by_label("500 Internal Server Error").check()
    page.get_by_role("button", name="Save answer").click()
    expect(page.get_by_role("status").first).to_contain_text("now answers 500")
    send_test(endpoint)
    expect(page.locator("#inspector-requests article")).to_have_count(2, timeout=15_000)
    expect(page.locator("#inspector-requests article").first).to_contain_text("answered 500")


def test_it_shows_the_catalogue_and_the_external_apps_page(
    page: Any, owner: User, merchant: Merchant, receiver: Receiver
) -> None:
    log_in(page)
    page.get_by_role("link", name="Event catalogue").click()
    expect(page.get_by_role("heading", name="Event catalogue", exact=True)).to_be_visible()
    page.get_by_text("inventory_levels.update").first.click()  # opens its sample
    expect(page.locator("#sample-inventory_levelsupdate")).to_contain_text(
        "QWhxek54UkQ3eTArdml2d1NkSDVnUT09"
    )
    expect(page.locator("#snippet-python")).to_contain_text("def verify(")
    shoot(page, "22-catalogue")

    page.get_by_role("link", name="External apps").click()
    page.get_by_label("App URL").fill(receiver.url("/loyalty"))
    page.get_by_label("Validate Coupon").uncheck()
    page.get_by_role("button", name="Connect loyalty app").click()
    expect(page.get_by_role("status").first).to_contain_text("Loyalty app connected")
    app = LoyaltyApp.objects.get(merchant=merchant)
    assert not app.validate_coupon and app.fetch_member_point
    shoot(page, "23-external-apps")

    # On a phone nothing overflows sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    for url in ("/external-apps/", "/catalogue/", "/inspector/"):
        page.goto(url)
        shoot(page, "24-phone" + url.replace("/", "-").rstrip("-"))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), url


def test_it_uses_an_inspector_as_a_webhook_for_all_events_including_later_ones(
    sized_page: Any, owner: User, merchant: Merchant
) -> None:
    inspector = Inspector.objects.create(merchant=merchant, name="Till try-out")
    log_in(sized_page)
    sized_page.goto(f"/inspector/{inspector.public_id}/")
    sized_page.get_by_role("button", name="Use as webhook URL").click()
    expect(sized_page.get_by_role("status").first).to_contain_text("every event type")
    endpoint = Endpoint.objects.get(merchant=merchant)
    assert not endpoint.event_types.exists()  # none picked: all of them, now and later
    settings_card = sized_page.locator("section[aria-labelledby=settings-title]")
    expect(settings_card).to_contain_text("All events")
    expect(settings_card).not_to_contain_text("receipts.update")

    # A type staff add afterwards reaches it too.
    EventType.objects.create(
        name="gift_cards.update", category=Category.objects.first(), is_active=True
    )
    emit(merchant, "gift_cards.update", {"card": "GC-1"})
    assert Delivery.objects.filter(endpoint=endpoint).count() == 1


def test_it_says_on_the_inspector_page_that_slow_answers_are_limited(
    sized_page: Any, owner: User, merchant: Merchant
) -> None:
    inspector = Inspector.objects.create(merchant=merchant, name="Slow till")
    log_in(sized_page)
    sized_page.goto(f"/inspector/{inspector.public_id}/")
    sized_page.locator("input[name=answer][value=slow]").check()
    hint = sized_page.locator("[data-show-when='answer=slow']")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("At most 2 slow answers wait at once")
    expect(hint).to_contain_text("answered 503")
