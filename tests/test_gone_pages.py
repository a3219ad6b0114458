"""Back after deleting a webhook does not show it again: signed-in pages are never cached, and
a page whose object is gone says so. In a real browser at a desk's and a phone's size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from endpoints.models import Endpoint
from tests.conftest import CHROMIUM
from tests.test_browser import SCREENSHOTS, expect, log_in

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test)"),
]


def test_it_says_a_deleted_webhook_is_gone_on_back(
    sized_page: Any, viewport: dict[str, int], owner: User, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/pos", description="Ledger")
    log_in(sized_page)
    response = sized_page.goto(f"/webhooks/{endpoint.public_id}/")
    assert "no-store" in response.headers["cache-control"]

    sized_page.locator(".page-head").get_by_role("link", name="Delete").click()
    sized_page.get_by_role("dialog").get_by_role("button", name="Delete webhook").click()
    expect(sized_page.get_by_role("status").first).to_contain_text("Webhook deleted")
    assert not Endpoint.objects.filter(pk=endpoint.pk).exists()

    sized_page.go_back()
    main = sized_page.locator("main")
    expect(main.get_by_role("heading", name="Not found")).to_be_visible()
    expect(main).to_contain_text(
        "This webhook does not exist: it was deleted, or it belongs to another account."
    )
    expect(main.get_by_role("button", name="Disable")).to_have_count(0)
    expect(main).not_to_contain_text("Enabled")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sized_page.screenshot(path=str(SCREENSHOTS / f"gone-{viewport['width']}.png"))


def test_it_sends_no_store_on_every_signed_in_page(
    client: Client, owner: User, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/pos")
    client.force_login(owner)
    for url in ["/webhooks/", f"/webhooks/{endpoint.public_id}/", "/events/", "/inspector/"]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert "no-store" in response["Cache-Control"], url
    gone = client.get("/webhooks/ep_doesnotexist/")
    assert gone.status_code == 404
    assert "no-store" in gone["Cache-Control"]
    assert "This webhook does not exist" in gone.content.decode()
