"""What surrounds every page, in a real browser at a desk's and a phone's size: no console
errors (the favicon), the shop's whole name and an unbroken "Log out" on a phone, a way back
from the API reference with a summary per operation, and a long description refused aloud.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import Merchant, User
from endpoints.models import Endpoint
from tests.conftest import CHROMIUM
from tests.test_browser import SCREENSHOTS, expect, log_in

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test)"),
]

LONG_NAME = "The Long-Named Coffee Roasters of Upper Street Ltd"


@pytest.fixture
def long_named(merchant: Merchant) -> Merchant:
    merchant.name = LONG_NAME
    merchant.save(update_fields=["name"])
    return merchant


def test_it_walks_the_dashboard_without_a_console_error(
    sized_page: Any, owner: User, long_named: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/pos")
    errors: list[str] = []
    sized_page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sized_page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    log_in(sized_page)
    for path in [
        "/webhooks/",
        f"/webhooks/{endpoint.public_id}/",
        "/events/",
        "/inspector/",
        "/catalogue/",
        "/api-keys/",
        "/api/docs/",
    ]:
        sized_page.goto(path)
        sized_page.wait_for_load_state("networkidle")
    icon = sized_page.request.get("/favicon.ico")
    assert icon.ok and icon.headers["content-type"].startswith("image/")
    assert errors == []


def test_it_shows_the_whole_shop_name_and_log_out_on_one_line(
    sized_page: Any, viewport: dict[str, int], owner: User, long_named: Merchant
) -> None:
    log_in(sized_page)
    name = sized_page.locator(".account-name")
    expect(name).to_be_visible()
    if viewport["width"] < 800:
        # A phone has no hover to read a title: the whole name is shown, not an ellipsis.
        assert name.evaluate("e => e.scrollWidth <= e.clientWidth")
        assert LONG_NAME in name.inner_text()
    else:
        # A desk keeps one row: the name gives way first, whole in its title.
        assert LONG_NAME in name.get_attribute("title")
    log_out = sized_page.get_by_role("button", name="Log out")
    line = sized_page.get_by_role("link", name="Password").bounding_box()["height"]
    assert log_out.bounding_box()["height"] <= line + 2  # one line, not two
    assert sized_page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sized_page.locator("header.topbar").screenshot(
        path=str(SCREENSHOTS / f"header-{viewport['width']}.png")
    )


def test_it_leads_back_from_the_api_reference_with_summaries(sized_page: Any, owner: User) -> None:
    log_in(sized_page)
    sized_page.goto("/api/docs/")
    expect(sized_page.locator(".opblock-summary-description").first).to_be_visible()
    expect(sized_page.get_by_text("Emit an event", exact=True)).to_be_visible()
    sized_page.get_by_role("link", name="Back to the dashboard").click()
    expect(sized_page.get_by_role("heading", name="Webhook Management")).to_be_visible()


def test_it_gives_every_api_operation_a_summary(client: Client, db: None) -> None:
    schema = client.get("/api/v1/openapi.json")
    assert schema.status_code == 200
    missing = [
        f"{method.upper()} {path}"
        for path, operations in schema.json()["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and not operation.get("summary")
    ]
    assert missing == []


def test_it_refuses_a_description_over_500_characters_aloud(
    sized_page: Any, owner: User, merchant: Merchant
) -> None:
    log_in(sized_page)
    sized_page.goto("/webhooks/add/")
    sized_page.get_by_label("Webhook URL").fill("http://127.0.0.1:9/pos")
    sized_page.get_by_label("Description").fill("x" * 600)
    sized_page.get_by_label("Send a test now").uncheck()
    sized_page.get_by_role("button", name="Add webhook").click()
    expect(sized_page.locator("main")).to_contain_text("at most 500 characters (it has 600)")
    assert not Endpoint.objects.filter(merchant=merchant).exists()
