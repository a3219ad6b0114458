"""The dashboard in a real browser: Playwright driving Debian's Chromium against live_server.

Webhooks point at a real receiver on 127.0.0.1 and deliveries go through a real RQ worker.
Screenshots of the main pages are written to var/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from accounts.models import Merchant, User
from deliveries import emit
from deliveries.engine import send_test
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import CHROMIUM, PASSWORD, Answer, Receiver

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test)"),
]


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def shoot_top(page: Any, name: str, width: int) -> None:
    """The top of the whole page, short enough to stay a small PNG (docs/screenshots/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("document.documentElement.scrollHeight")
    limit = 1500 if width >= 800 else 2800
    page.screenshot(
        path=str(SCREENSHOTS / f"{name}-{width}.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": width, "height": min(height, limit)},
    )


def log_in(page: Any, screenshot: str | None = None) -> None:
    page.goto("/webhooks/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    if screenshot:
        shoot(page, screenshot)
    page.get_by_label("Username").fill("owner")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Webhook Management")).to_be_visible()


def done() -> bool:
    return not Delivery.objects.filter(status__in=["pending", "delivering"]).exists()


def test_it_manages_a_webhook_from_adding_to_deleting(
    page: Any,
    owner: User,
    merchant: Merchant,
    receiver: Receiver,
    work: Callable[..., None],
) -> None:
    receiver.default = Answer(200, b'{"ok": true, "till": "front-counter"}')
    log_in(page, "01-login")
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    shoot(page, "02-empty-state")

    # Add a webhook pointing at the receiver.
    page.get_by_role("link", name="Add webhook").first.click()
    page.get_by_label("Webhook URL").fill(receiver.url("/pos"))
    page.get_by_label("Description").fill("Accounting sync")
    page.get_by_label("Category").select_option(label="Sales")
    page.get_by_label("receipts.update").check()
    shoot(page, "03-add-form")
    page.get_by_label("Send a test now").uncheck()  # tested on its own in test_dashboard_truth
    page.get_by_role("button", name="Add webhook").click()
    expect(page.get_by_role("status").first).to_contain_text("Webhook added")
    endpoint = Endpoint.objects.get()
    assert [t.name for t in endpoint.event_types.all()] == ["receipts.update"]

    # It is listed.
    page.get_by_role("link", name="Webhooks", exact=True).click()
    row = page.locator(f"#row-{endpoint.public_id}")
    expect(row).to_contain_text(receiver.url("/pos"))
    expect(row).to_contain_text("Enabled")

    # Edit it.
    row.get_by_role("link", name="Edit").click()
    page.get_by_label("Description").fill("Accounting sync (ledger)")
    page.get_by_label("Send a test now").uncheck()
    page.get_by_role("button", name="Save webhook").click()
    expect(page.get_by_role("status").first).to_have_text("Webhook saved.")
    expect(page.get_by_text("Accounting sync (ledger)")).to_be_visible()

    # Disable and enable it from the list.
    page.get_by_role("link", name="Webhooks", exact=True).click()
    row.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status").first).to_contain_text("Webhook disabled.")
    expect(row).to_contain_text("Disabled")
    row.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("status").first).to_contain_text("Webhook enabled.")
    expect(row).to_contain_text("Enabled")

    # Send a test: the receiver's answer appears inline.
    row.get_by_role("button", name="Send test").click()
    result = page.locator(f"#test-{endpoint.public_id}")
    expect(result).to_contain_text("Test delivered")
    expect(result.locator(".test-status")).to_have_text("200")
    expect(result).to_contain_text("front-counter")
    assert receiver.requests[-1].json()["type"] == "webhook.test"
    shoot(page, "04-webhook-management")

    # Emit an event and watch its delivery appear on the webhook's page (no reload).
    row.get_by_role("link", name=receiver.url("/pos")).click()
    emit(merchant, "receipts.update", {"receipt_no": "R-1001", "total": "18.40"})
    work(until=done)
    deliveries = page.locator("#deliveries-table")
    expect(deliveries.locator("tbody tr")).to_have_count(2, timeout=15_000)
    expect(deliveries.locator("tbody tr").first).to_contain_text("receipts.update")
    expect(deliveries.locator("tbody tr").first).to_contain_text("Succeeded")

    # Make a delivery fail, then press "Retry" once the receiver has recovered.
    receiver.default = Answer(404, b"route not found")
    emit(merchant, "receipts.update", {"receipt_no": "R-1002", "total": "3.10"})
    work(until=done)
    page.reload()
    failed = deliveries.locator("tbody tr").first
    expect(failed).to_contain_text("Failed")
    expect(failed).to_contain_text("404")
    shoot(page, "05-webhook-detail")
    receiver.default = Answer(200, b"thanks")
    failed.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status").first).to_contain_text("will be retried now")
    work(until=done)
    page.reload()
    expect(deliveries.locator("tbody tr").first).to_contain_text("Succeeded")

    # The delivery's page shows both attempts with the request and the answers.
    deliveries.locator("tbody tr").first.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name="Attempt 1")).to_be_visible()
    expect(page.get_by_role("heading", name="Attempt 2")).to_be_visible()
    expect(page.get_by_text("route not found")).to_be_visible()
    shoot(page, "06-delivery-detail")

    # Reveal the signing secret.
    page.goto(f"/webhooks/{endpoint.public_id}/")
    page.get_by_role("button", name="Reveal").click()
    expect(page.locator(".secret")).to_have_text(endpoint.secret)

    # Events: the list and one event with its deliveries.
    page.get_by_role("link", name="Events", exact=True).click()
    expect(page.get_by_role("heading", name="Events")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(3)
    shoot(page, "07-events")
    page.locator("tbody tr").first.get_by_role("link").first.click()
    expect(page.get_by_role("link", name="Resend")).to_be_visible()
    shoot(page, "08-event-detail")

    # Delete the webhook after confirming.
    page.get_by_role("link", name="Webhooks", exact=True).click()
    row.get_by_role("link", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete this webhook?")
    shoot(page, "09-delete-confirmation")
    dialog.get_by_role("button", name="Delete webhook").click()
    expect(page.get_by_role("status").first).to_contain_text("Webhook deleted")
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    assert not Endpoint.objects.exists()


def test_it_creates_an_api_key_shown_once_and_revokes_it(page: Any, owner: User) -> None:
    log_in(page)
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_text("No API keys yet")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Back-office sync")
    page.get_by_role("button", name="Create API key").click()
    expect(page.get_by_text("It will not be shown again.")).to_be_visible()
    raw_key = page.locator("#new-api-key").inner_text()
    assert raw_key.startswith("whk_")
    shoot(page, "10-api-key-created")

    page.get_by_role("link", name="Done").click()
    expect(page.locator("tbody")).to_contain_text("Back-office sync")
    assert raw_key not in page.content()
    shoot(page, "11-api-keys")
    page.get_by_role("link", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("status").first).to_contain_text("revoked")
    expect(page.locator("tbody")).to_contain_text("Revoked")


def test_it_fits_a_phone_screen(
    browser: Any, live_server: Any, owner: User, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(
        "https://shop:hunter2@127.0.0.1:9/pos", types=("receipts.update", "products.update")
    )
    send_test(endpoint)  # nothing listens on port 9: a failed delivery to show
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    page = context.new_page()
    log_in(page)
    # Nothing overflows sideways: tables turn into cards.
    expect(page.get_by_role("link", name="https://shop:****@127.0.0.1:9/pos")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shoot(page, "12-webhook-management-phone")
    page.get_by_role("link", name="https://shop:****@127.0.0.1:9/pos").click()
    expect(page.locator("#deliveries-table")).to_contain_text("webhook.test")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shoot(page, "13-webhook-detail-phone")
    context.close()
