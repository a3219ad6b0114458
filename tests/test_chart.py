"""The 24-hour chart on a webhook's page, in a real browser at a desk's and a phone's size.

Deliveries retrying after a failure have their own colour and legend entry, apart from those
waiting for a first attempt and those cancelled; on a phone the chart fits the screen with
the current hour in view.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Merchant, User
from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import CHROMIUM, Answer, Receiver
from tests.test_browser import expect, log_in, shoot_top

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test)"),
]


def _failing_webhook(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> Endpoint:
    """A webhook whose receiver answers 500: two deliveries failed (their one retry failed too),
    three retrying, one not tried yet."""
    receiver.default = Answer(500, b"database is down")
    endpoint = make_endpoint(
        receiver.url("/pos"), retry_policy="fixed", fixed_retries=1, fixed_cooldown_seconds=1
    )
    for n in range(2):
        emit(merchant, "receipts.update", {"receipt_no": f"R-{n}"})
    work(until=lambda: Delivery.objects.filter(status="failed").count() == 2)
    for n in range(2, 5):
        emit(merchant, "receipts.update", {"receipt_no": f"R-{n}"})
    work(until=lambda: Delivery.objects.filter(status="pending", attempts=1).count() == 3)
    emit(merchant, "receipts.update", {"receipt_no": "R-9"})  # no worker runs: it waits
    return endpoint


def test_it_draws_retrying_deliveries_in_their_own_colour(
    sized_page: Any,
    viewport: dict[str, int],
    owner: User,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
) -> None:
    endpoint = _failing_webhook(merchant, receiver, make_endpoint, work)
    log_in(sized_page)
    sized_page.goto(f"/webhooks/{endpoint.public_id}/")

    chart = sized_page.locator("figure.chart")
    svg = chart.locator("svg:visible")
    expect(svg).to_have_count(1)
    expect(svg.locator("rect.bar-retrying")).to_have_count(1)
    expect(svg.locator("rect.bar-waiting")).to_have_count(1)
    expect(svg.locator("rect.bar-failed")).to_have_count(1)
    assert svg.locator("rect.bar-retrying").evaluate(
        "r => getComputedStyle(r).fill"
    ) != svg.locator("rect.bar-waiting").evaluate("r => getComputedStyle(r).fill")
    legend = chart.locator(".legend")
    expect(legend).to_contain_text("Retrying after a failure")
    expect(legend).to_contain_text("Waiting for a first attempt")
    expect(legend).to_contain_text("Cancelled")
    expect(legend).not_to_contain_text("Pending or cancelled")
    expect(svg.locator("desc")).to_contain_text("3 retrying after a failure")
    shoot_top(sized_page, "webhook-failing", viewport["width"])
    chart.get_by_text("Show as a table").click()
    header = chart.locator("thead")
    expect(header.get_by_title("Retrying after a failure")).to_have_text("Retrying")


def test_it_fits_the_chart_on_a_phone_with_the_current_hour_in_view(
    sized_page: Any,
    viewport: dict[str, int],
    owner: User,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
) -> None:
    endpoint = _failing_webhook(merchant, receiver, make_endpoint, work)
    log_in(sized_page)
    sized_page.goto(f"/webhooks/{endpoint.public_id}/")

    svg = sized_page.locator("figure.chart svg:visible")
    card = sized_page.locator("#day-stats")
    card_box = card.bounding_box()
    svg_box = svg.bounding_box()
    # The drawing is no wider than its card, so nothing scrolls sideways ...
    assert svg_box["x"] >= card_box["x"]
    assert svg_box["x"] + svg_box["width"] <= card_box["x"] + card_box["width"]
    # ... and the current hour's bar (the last one, where the deliveries are) is on screen.
    last_bar = svg.locator("rect.bar-retrying").bounding_box()
    assert last_bar["x"] >= 0 and last_bar["x"] + last_bar["width"] <= viewport["width"]
    # The y-axis labels are readable: at least 9 px tall on screen.
    tick = svg.locator("text.tick").first.bounding_box()
    assert tick["height"] >= 9
    assert sized_page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
