"""A webhook paused by the circuit breaker is told in one plain voice, in a real browser.

No "Enabled" beside "Paused", no breaker jargon, the deliveries held behind the pause counted
and each saying what it waits for, at a desk's and a phone's size.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Merchant, User
from deliveries import emit
from endpoints.models import Endpoint
from tests.conftest import CHROMIUM, PASSWORD
from tests.test_browser import expect, log_in, shoot_top

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test)"),
]

JARGON = re.compile(r"probe|Half-open|Open:|circuit|breaker", re.IGNORECASE)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield port


@pytest.fixture
def paused(
    settings: Any,
    merchant: Merchant,
    closed_port: int,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
) -> Endpoint:
    """A webhook whose receiver refuses connections, paused by a real worker's attempts."""
    settings.WEBHOOK_BREAKER_PAUSE_SECONDS = 600
    endpoint = make_endpoint(f"http://127.0.0.1:{closed_port}/pos", description="Ledger")
    for n in range(12):
        emit(merchant, "receipts.update", {"receipt_no": f"R-{n}"})
    work(until=lambda: Endpoint.objects.get(pk=endpoint.pk).breaker_state == "open")
    endpoint.refresh_from_db()
    return endpoint


def test_it_tells_a_paused_webhook_in_one_plain_sentence(
    sized_page: Any, viewport: dict[str, int], owner: User, paused: Endpoint
) -> None:
    at = f"{paused.breaker_probe_at:%H:%M} UTC"
    log_in(sized_page)

    row = sized_page.locator(f"#row-{paused.public_id}")
    status = row.locator("td[data-label=Status]")
    expect(status).to_contain_text("Paused")
    expect(status).to_contain_text(f"we try again at {at}")
    expect(status).not_to_contain_text("Enabled")
    expect(status).not_to_contain_text(JARGON)
    expect(row.locator("td.cell-day")).to_contain_text("12 held by the pause")

    sized_page.goto(f"/webhooks/{paused.public_id}/")
    head = sized_page.locator("#endpoint-status")
    expect(head).to_contain_text("Paused")
    expect(head).not_to_contain_text("Enabled")
    sentence = sized_page.locator("#paused .pause-sentence")
    expect(sentence).to_have_text(
        re.compile(
            rf"^Paused after \d+ attempts got no answer: we try again at {at}; "
            r"12 deliveries wait\.$"
        )
    )
    expect(sized_page.locator("#day-stats .stats")).to_contain_text("12 held by the pause")
    expect(sized_page.locator("main")).not_to_contain_text(JARGON)

    rows = sized_page.locator("#deliveries-table tbody tr")
    expect(rows).to_have_count(12)
    for i in range(12):
        cell = rows.nth(i).locator("td[data-label=Status]")
        expect(cell).to_contain_text("Held")
        expect(cell).to_contain_text(f"until {at}, when we try again")
        expect(cell).not_to_contain_text("next attempt")
        expect(cell).not_to_contain_text("Pending")
        expect(cell).not_to_contain_text("Retrying")
    shoot_top(sized_page, "webhook-paused", viewport["width"])

    # Once the pause is over, one delivery is tried: the page says so, still in plain words.
    Endpoint.objects.filter(pk=paused.pk).update(
        breaker_probe_at=timezone.now() - timedelta(seconds=1)
    )
    sized_page.reload()
    expect(sized_page.locator("#paused .pause-sentence")).to_contain_text(
        "we are trying one delivery now, and send the rest once it gets an answer; "
        "12 deliveries wait."
    )
    expect(rows.first.locator("td[data-label=Status]")).to_contain_text(
        "until the delivery we are trying now gets an answer"
    )
    expect(sized_page.locator("main")).not_to_contain_text(JARGON)


def test_it_shows_staff_the_pause_in_the_same_words(
    sized_page: Any, staff: User, paused: Endpoint
) -> None:
    sized_page.goto("/admin/login/")
    sized_page.get_by_label("Username").fill("staff")
    sized_page.get_by_label("Password").fill(PASSWORD)
    sized_page.get_by_role("button", name="Log in").click()

    sized_page.goto("/admin/endpoints/endpoint/")
    row = sized_page.locator("#result_list tbody tr").first
    expect(row).to_contain_text(f"Paused: we try again at {paused.breaker_probe_at:%H:%M} UTC")
    expect(row).not_to_contain_text(JARGON)
    sized_page.goto("/admin/endpoints/endpoint/failing/")
    failing = sized_page.locator("main table tbody tr").first
    expect(failing).to_contain_text("Paused")
    expect(failing).to_contain_text("no answer")
    expect(failing).not_to_contain_text("Enabled")
    sized_page.goto("/admin/deliveries/delivery/")
    rows = sized_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(12)
    expect(rows.first).to_contain_text("Held")
    expect(sized_page.locator("#result_list")).not_to_contain_text("Pending")


def test_it_filters_paused_webhooks_apart_from_enabled_ones(
    sized_page: Any, owner: User, paused: Endpoint, make_endpoint: Callable[..., Endpoint]
) -> None:
    healthy = make_endpoint("http://127.0.0.1:9/healthy")
    log_in(sized_page)
    sized_page.get_by_label("Status").select_option(label="Paused")
    sized_page.get_by_role("button", name="Filter").click()
    expect(sized_page.locator(f"#row-{paused.public_id}")).to_be_visible()
    expect(sized_page.locator(f"#row-{healthy.public_id}")).to_have_count(0)
    sized_page.get_by_label("Status").select_option(label="Enabled")
    sized_page.get_by_role("button", name="Filter").click()
    expect(sized_page.locator(f"#row-{healthy.public_id}")).to_be_visible()
    expect(sized_page.locator(f"#row-{paused.public_id}")).to_have_count(0)
