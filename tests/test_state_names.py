"""One name per delivery state on the webhook page, the events list and the admin; a timeout
reads "no answer in N s" in the dashboard while the API keeps its 408. In a real browser.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant, User
from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import CHROMIUM, PASSWORD, Answer, Receiver
from tests.test_browser import SCREENSHOTS, expect, log_in

STATUS_408 = re.compile(r"\b408\b")

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test)"),
]


@pytest.fixture
def deliveries(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> dict[str, Delivery]:
    """One delivery retrying after a 500, one retrying after a timeout, one not tried yet."""
    failing = make_endpoint(receiver.url("/fails"), types=("receipts.update",))
    slow = make_endpoint(receiver.url("/slow"), types=("products.update",), timeout_seconds=1)
    receiver.routes["/fails"] = Answer(500, b"database is down")
    receiver.routes["/slow"] = Answer(200, b"late", delay=3)
    emit(merchant, "receipts.update", {"receipt_no": "R-1"})
    emit(merchant, "products.update", {"sku": "LATTE"})
    work(until=lambda: Delivery.objects.filter(attempts=1).count() == 2)
    emit(merchant, "customers.update", {"id": "C-1"})  # nothing gets it: no webhook subscribes
    late = emit(merchant, "receipts.update", {"receipt_no": "R-2"})  # not tried: no worker runs
    return {
        "failing": Delivery.objects.get(endpoint=failing, attempts=1),
        "slow": Delivery.objects.get(endpoint=slow),
        "waiting": Delivery.objects.get(event__public_id=late.public_id),
    }


def test_it_calls_each_state_by_one_name_everywhere(
    sized_page: Any,
    viewport: dict[str, int],
    owner: User,
    staff: User,
    deliveries: dict[str, Delivery],
) -> None:
    failing = deliveries["failing"]
    log_in(sized_page)

    # The webhook page.
    sized_page.goto(f"/webhooks/{failing.endpoint.public_id}/")
    table = sized_page.locator("#deliveries-table")
    expect(table.locator("tbody tr").nth(1)).to_contain_text("Retrying")
    expect(table.locator("tbody tr").first).to_contain_text("Waiting")
    expect(table).not_to_contain_text("Pending")

    # The events list: the same words, not "in progress".
    sized_page.goto("/events/")
    events = sized_page.locator("main table")
    expect(events).to_contain_text("1 retrying")
    expect(events).to_contain_text("1 waiting")
    expect(events).not_to_contain_text("in progress")
    expect(events).not_to_contain_text("pending")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sized_page.screenshot(path=str(SCREENSHOTS / f"states-events-{viewport['width']}.png"))

    # The admin: the same words, in the list and in its filter.
    sized_page.context.clear_cookies()
    sized_page.goto("/admin/login/")
    sized_page.get_by_label("Username").fill("staff")
    sized_page.get_by_label("Password").fill(PASSWORD)
    sized_page.get_by_role("button", name="Log in").click()
    sized_page.goto("/admin/deliveries/delivery/")
    result = sized_page.locator("#result_list")
    expect(result).to_contain_text("Retrying")
    expect(result).to_contain_text("Waiting")
    expect(result).not_to_contain_text("Pending")
    sized_page.goto("/admin/deliveries/delivery/?state=retrying")
    expect(sized_page.locator("#result_list tbody tr")).to_have_count(2)


def test_it_says_no_answer_for_a_timeout_and_keeps_408_in_the_api(
    sized_page: Any,
    viewport: dict[str, int],
    owner: User,
    merchant: Merchant,
    deliveries: dict[str, Delivery],
) -> None:
    slow = deliveries["slow"]
    log_in(sized_page)
    sized_page.goto(f"/webhooks/{slow.endpoint.public_id}/")
    response = sized_page.locator("#deliveries-table tbody tr").first.locator(
        "td[data-label=Response]"
    )
    expect(response).to_contain_text("no answer in 1 s")
    # As a whole number: the receiver's port (40843, say) may hold the digits.
    expect(response).not_to_contain_text(STATUS_408)

    sized_page.goto(f"/deliveries/{slow.public_id}/")
    main = sized_page.locator("main")
    expect(main).to_contain_text("No answer in 1 s")
    expect(main).not_to_contain_text(STATUS_408)
    sized_page.screenshot(path=str(SCREENSHOTS / f"states-timeout-{viewport['width']}.png"))

    sized_page.goto(f"/events/{slow.event.public_id}/")
    expect(sized_page.locator("main")).to_contain_text("no answer in 1 s")

    _key, raw = ApiKey.issue(merchant, "ops")
    api = Client(headers={"authorization": f"Bearer {raw}"})
    shown = api.get(f"/api/v1/deliveries/{slow.public_id}").json()["delivery"]
    assert shown["last_status_code"] == 408
