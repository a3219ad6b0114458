"""The admin's lists fit a 1280 px screen: every column in view without scrolling sideways.

With long merchant names and URLs, the endpoint list was 1,819 px wide and the delivery list
1,257 px in a 930 px area, the merchant, breaker and time columns off-screen. On a phone the
table scrolls inside its own box and the page itself does not. In a real browser.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Merchant, User
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from tests.conftest import CHROMIUM, PASSWORD
from tests.test_browser import SCREENSHOTS, expect

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test)"),
]


@pytest.fixture
def busy(make_endpoint: Callable[..., Endpoint]) -> None:
    """Endpoints and deliveries with the longest names and URLs merchants use."""
    merchant = Merchant.objects.create(name="The Long-Named Coffee Roasters of Upper Street Ltd")
    now = timezone.now()
    long_url = "https://hooks.accounting-platform.example.com/v2/merchants/9f8e7d6c/pos/receipts"
    for n in range(3):
        endpoint = make_endpoint(
            f"{long_url}/{n}",
            merchant=merchant,
            description="Ledger sync for the head office accounting team",
            failing_since=now - timedelta(hours=2),
            breaker_state=Endpoint.BreakerState.OPEN,
            breaker_failures=7,
            breaker_probe_at=now + timedelta(minutes=5),
        )
        event = Event.objects.create_event(merchant, "inventory_levels.update", {"sku": "X"})
        Delivery.objects.create(
            merchant=merchant,
            event=event,
            endpoint=endpoint,
            status="pending",
            attempts=4,
            last_status_code=408,
            last_error="timed out after 30 s",
            last_attempt_at=now,
            next_attempt_at=now + timedelta(minutes=5),
        )


def _log_in_staff(page: Any) -> None:
    page.goto("/admin/login/")
    page.get_by_label("Username").fill("staff")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


@pytest.mark.parametrize("path", ["/admin/endpoints/endpoint/", "/admin/deliveries/delivery/"])
def test_it_fits_the_admin_lists_on_the_screen(
    sized_page: Any, viewport: dict[str, int], staff: User, busy: None, path: str
) -> None:
    _log_in_staff(sized_page)
    sized_page.goto(path)
    table = sized_page.locator("#result_list")
    expect(table.locator("tbody tr")).to_have_count(3)
    name = path.strip("/").replace("/", "-")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sized_page.screenshot(path=str(SCREENSHOTS / f"{name}-{viewport['width']}.png"))
    # The page itself never scrolls sideways.
    assert sized_page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    if viewport["width"] >= 1280:
        # On a desk every column is in view: the table is no wider than its box.
        box = sized_page.locator("#changelist .results")
        assert table.bounding_box()["width"] <= box.bounding_box()["width"] + 1
        last_header = table.locator("thead th").last.bounding_box()
        assert last_header["x"] + last_header["width"] <= viewport["width"]
