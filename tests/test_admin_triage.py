"""The admin built for triage (issue 15, item 8).

The delivery list fits the screen with its status in view, times carry seconds and the
zone, events are found by type name, and one delivery's page has Retry. (Staff who wander
onto merchant pages get the styled 404 now that `make run` runs with DEBUG off: see
test_make_run.py.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Merchant, User
from deliveries.models import Delivery, DeliveryAttempt, Event
from endpoints.models import Endpoint
from tests.conftest import CHROMIUM, PASSWORD
from tests.test_browser import SCREENSHOTS

SECONDS_UTC = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC")


def failed_delivery(endpoint: Endpoint, attempts: int = 3) -> Delivery:
    event = Event.objects.create_event(endpoint.merchant, "receipts.update", {"total": "9.99"})
    delivery = Delivery.objects.create(
        merchant=endpoint.merchant,
        event=event,
        endpoint=endpoint,
        status="failed",
        attempts=attempts,
        last_status_code=500,
        last_error="HTTP 500",
    )
    start = timezone.now()
    for number in range(1, attempts + 1):
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            url=endpoint.masked_url,
            response_status=500,
            error="HTTP 500",
            created_at=start + timedelta(seconds=2 * number),
        )
    return delivery


@pytest.fixture
def endpoint(make_endpoint: Callable[..., Endpoint]) -> Endpoint:
    url = "https://hooks.example-merchant-backoffice.com/integrations/pos/" + "x" * 120
    return make_endpoint(url)


def test_it_shows_the_status_early_and_times_with_seconds(
    staff_client: Client, endpoint: Endpoint
) -> None:
    failed_delivery(endpoint)
    page = staff_client.get("/admin/deliveries/delivery/").content.decode()
    headers = re.findall(r'<th scope="col"[^>]*class="[^"]*column-([a-z_]+)', page)
    assert headers.index("status_badge") <= 2, headers
    assert SECONDS_UTC.search(page)
    # The long URL is shortened on the page, and in full in its title.
    assert "x" * 60 + "</span>" not in page
    assert "…</span>" in page


def test_it_shows_attempt_times_to_the_second(staff_client: Client, endpoint: Endpoint) -> None:
    delivery = failed_delivery(endpoint)
    page = staff_client.get(f"/admin/deliveries/delivery/{delivery.pk}/change/").content.decode()
    times = SECONDS_UTC.findall(page)
    assert len(set(times)) >= 3, times  # three attempts, two seconds apart, tell apart


def test_it_finds_events_by_type_name(staff_client: Client, merchant: Merchant) -> None:
    event = Event.objects.create_event(merchant, "inventory_levels.update", {})
    Event.objects.create_event(merchant, "receipts.update", {})
    page = staff_client.get("/admin/deliveries/event/", {"q": "inventory_levels"}).content.decode()
    assert event.public_id in page
    assert page.count('class="field-public_id"') == 1


def test_it_retries_one_delivery_from_its_page(
    staff_client: Client, endpoint: Endpoint, redis_conn: Any
) -> None:
    delivery = failed_delivery(endpoint)
    page = staff_client.get(f"/admin/deliveries/delivery/{delivery.pk}/change/").content.decode()
    assert ">Retry</button>" in page
    response = staff_client.post(f"/admin/deliveries/delivery/{delivery.pk}/retry/", follow=True)
    assert "will be retried now" in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.next_attempt_at is not None
    # Only by POST: a link prefetcher cannot retry anything.
    assert staff_client.get(f"/admin/deliveries/delivery/{delivery.pk}/retry/").status_code == 405


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")
@pytest.mark.parametrize("width", [1366, 1920])
def test_it_fits_the_delivery_list_on_the_screen(
    browser: Any, live_server: Any, staff: User, endpoint: Endpoint, width: int
) -> None:
    for _ in range(3):
        failed_delivery(endpoint)
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": width, "height": 900}
    )
    page = context.new_page()
    try:
        page.goto("/admin/login/")
        page.get_by_label("Username").fill("staff")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto("/admin/deliveries/delivery/")
        table = page.locator("#result_list").bounding_box()
        assert table["x"] + table["width"] <= width, table
        status = page.locator("th.column-status_badge").bounding_box()
        assert status["x"] + status["width"] <= width, status
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"admin-deliveries-{width}.png"), full_page=True)
    finally:
        context.close()
