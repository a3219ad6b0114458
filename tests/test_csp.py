"""The Content-Security-Policy in a real browser (issue 14, item 9): the dashboard, the
admin, the API docs (Swagger UI from our own static files) and the rq dashboard work under it,
with no CSP violation reported by Chromium."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Merchant, User
from deliveries import emit
from endpoints.models import Endpoint
from tests.conftest import CHROMIUM, PASSWORD, Receiver
from tooling.models import Inspector

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test)"),
]

# Each violation is recorded by the page itself, and Chromium also reports it on the console.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


class Watched:
    """A page whose CSP violations and script errors are collected."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console: list[str] = []
        self.errors: list[str] = []
        page.add_init_script(RECORD_VIOLATIONS)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def visit(self, path: str, *, script_errors: bool = True) -> None:
        response = self.page.goto(path)
        assert response is not None and response.status == 200, path
        assert "default-src 'self'" in response.headers["content-security-policy"]
        self.page.wait_for_load_state("networkidle")
        self.assert_clean(path, script_errors=script_errors)

    def assert_clean(self, where: str, *, script_errors: bool = True) -> None:
        recorded = self.page.evaluate("window.__csp || []")
        assert recorded == [] and self.console == [], (where, recorded, self.console)
        if script_errors:
            assert self.errors == [], (where, self.errors)
        self.errors.clear()


@pytest.fixture
def watched(page: Any) -> Iterator[Watched]:
    yield Watched(page)


def log_in(page: Any, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state("networkidle")


def test_it_runs_the_dashboard_under_the_policy(
    watched: Watched,
    owner: User,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
) -> None:
    endpoint = make_endpoint(receiver.url(), description="Front till")
    emit(merchant, "receipts.update", {"receipt": 1})
    inspector = Inspector.objects.create(merchant=merchant, name="Try-out")
    log_in(watched.page, "owner")
    watched.assert_clean("login")
    for path in [
        "/webhooks/",
        f"/webhooks/{endpoint.public_id}/",
        f"/webhooks/{endpoint.public_id}/edit/",
        "/webhooks/add/",
        "/events/",
        "/api-keys/",
        "/inspector/",
        f"/inspector/{inspector.public_id}/",
        "/external-apps/",
        "/catalogue/",
    ]:
        watched.visit(path)
    # The script-driven parts still work: an inline test send shows the receiver's answer.
    watched.page.goto(f"/webhooks/{endpoint.public_id}/")
    watched.page.get_by_role("button", name=re.compile("Send test", re.I)).first.click()
    expect(watched.page.get_by_text(re.compile(r"\b200\b")).first).to_be_visible()
    watched.assert_clean("send test")


def test_it_serves_the_api_docs_from_our_own_files_under_the_policy(
    watched: Watched, owner: User
) -> None:
    requested: list[str] = []
    watched.page.on("request", lambda request: requested.append(request.url))
    log_in(watched.page, "owner")
    watched.page.goto("/api-keys/")
    watched.page.get_by_role("link", name="API reference").click()
    expect(watched.page).to_have_url(re.compile(r"/api/docs/$"))
    expect(watched.page.get_by_role("heading", name=re.compile("POS Webhooks API"))).to_be_visible()
    expect(watched.page.get_by_text("/api/v1/events").first).to_be_visible()
    watched.page.wait_for_load_state("networkidle")
    watched.assert_clean("api docs")
    outside = [url for url in requested if not url.startswith(watched.page.url.split("/api")[0])]
    assert outside == [] or all(url.startswith(("blob:", "data:")) for url in outside), outside


def test_it_runs_the_admin_and_the_rq_dashboard_under_the_policy(
    watched: Watched,
    staff: User,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    redis_conn: Any,
) -> None:
    endpoint = make_endpoint(receiver.url())
    emit(merchant, "receipts.update", {"receipt": 1})
    watched.page.goto("/admin/login/")
    watched.page.get_by_label("Username").fill("staff")
    watched.page.get_by_label("Password").fill(PASSWORD)
    watched.page.get_by_role("button", name="Log in").click()
    watched.page.wait_for_load_state("networkidle")
    watched.assert_clean("admin login")
    for path in [
        "/admin/",
        "/admin/endpoints/endpoint/",
        f"/admin/endpoints/endpoint/{endpoint.pk}/change/",
        f"/admin/accounts/merchant/{merchant.pk}/change/",
        "/admin/endpoints/endpoint/failing/",
        "/admin/deliveries/delivery/",
        "/admin/deliveries/event/",
        "/admin/rq/",
    ]:
        watched.visit(path)
    # django-rq 4.2's job lists call `$(...).actions()`, a jQuery plugin Django's admin
    # dropped in 4.1: a script error with or without a CSP (their links and tables work).
    for path in ["/admin/rq/queues/0/", "/admin/rq/workers/0/"]:
        watched.visit(path, script_errors=False)
    # The admin's own scripts run: the changelist's action checkbox selects every row.
    watched.page.goto("/admin/endpoints/endpoint/")
    watched.page.locator("#action-toggle").check()
    expect(watched.page.locator("input.action-select").first).to_be_checked()
    watched.assert_clean("admin actions")
