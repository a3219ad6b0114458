"""Tenant isolation: another merchant's objects are a 404 on every dashboard page and action."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from accounts import urls as accounts_urls
from accounts.models import ApiKey, Merchant, OAuthClient, User
from catalogue import urls as catalogue_urls
from deliveries import urls as deliveries_urls
from deliveries.models import Delivery, Event
from endpoints import urls as endpoints_urls
from endpoints.models import Endpoint
from tooling import urls as tooling_urls
from tooling.models import Inspector

# Every dashboard route, whichever app serves it.
DASHBOARD_PATTERNS = [
    *accounts_urls.urlpatterns,
    *catalogue_urls.urlpatterns,
    *deliveries_urls.urlpatterns,
    *endpoints_urls.urlpatterns,
    *tooling_urls.urlpatterns,
]

# Routes without an object of their own: they show the visitor's own merchant's data.
UNSCOPED = {
    "index",
    "login",
    "logout",
    "password_change",
    "webhooks",
    "add_webhook",
    "events",
    "api_keys",
    "create_api_key",
    "create_oauth_client",
    "inspectors",
    "create_inspector",
    "external_apps",
    "reveal_loyalty_secret",
    "confirm_remove_loyalty_app",
    "remove_loyalty_app",
    "catalogue",
    # A sign-in link: its one-time token is the credential (tests/test_portal_links.py).
    "portal_sign_in",
    # The inspector's public URL: its unguessable token is the credential, not a login.
    "catch",
    "catch_no_slash",
    "catch_subpath",
}


FORM = {"since": "2020-01-01T00:00", "name": "x", "retry": "1"}


def _missing(value: str | int) -> str | int:
    return 10**9 if isinstance(value, int) else value.split("_")[0] + "_doesnotexist"


@pytest.fixture
def owned(
    merchant: Merchant, owner: User, make_endpoint: Callable[..., Endpoint]
) -> dict[str, str | int]:
    """One object of each kind that belongs to the owner, by URL parameter."""
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    event = Event.objects.create_event(merchant, "receipts.update", {"receipt_no": "R-1"})
    delivery = Delivery.objects.create(
        merchant=merchant, event=event, endpoint=endpoint, status="failed", attempts=1
    )
    key, _ = ApiKey.issue(merchant, "Owner's key", created_by=owner)
    inspector = Inspector.objects.create(merchant=merchant, name="Owner's inspector")
    oauth_client, _ = OAuthClient.issue(merchant, "Owner's client", created_by=owner)
    return {
        "client_id": oauth_client.pk,
        "endpoint": endpoint.public_id,
        "event": event.public_id,
        "delivery": delivery.public_id,
        "key_id": key.pk,
        "inspector": inspector.public_id,
    }


def kwargs_for(pattern: URLPattern, owned: dict[str, str | int]) -> dict[str, str | int]:
    """Fill a route's parameters with the owner's object of the kind the route is about."""
    names = set(pattern.pattern.converters)
    if names == {"key_id"}:
        return {"key_id": owned["key_id"]}
    if names == {"client_id"}:
        return {"client_id": owned["client_id"]}
    assert names == {"public_id"}, f"new parameter in {pattern.name}: teach this test"
    view_module = pattern.callback.__module__
    if pattern.name in ("event", "resend_event", "confirm_resend_event"):
        return {"public_id": owned["event"]}
    if pattern.name in ("delivery", "retry_delivery"):
        return {"public_id": owned["delivery"]}
    if view_module == "tooling.views":
        return {"public_id": owned["inspector"]}
    assert view_module in ("endpoints.views", "endpoints.replay_views"), (
        f"{pattern.name}: which object is it about?"
    )
    return {"public_id": owned["endpoint"]}


@pytest.mark.parametrize("visitor", ["outsider", "staff"])
def test_it_answers_404_for_another_merchants_objects_on_every_route(
    request: pytest.FixtureRequest,
    owned: dict[str, str | int],
    merchant: Merchant,
    visitor: str,
) -> None:
    user: User = request.getfixturevalue(visitor)
    client = Client()
    client.force_login(user)
    endpoint = Endpoint.objects.get()
    secret = endpoint.secret

    checked = []
    for pattern in DASHBOARD_PATTERNS:
        assert isinstance(pattern, URLPattern)
        if pattern.name in UNSCOPED:
            continue
        kwargs = kwargs_for(pattern, owned)
        url = reverse(pattern.name, kwargs=kwargs)
        # The same route with an id that exists nowhere: the answer must not differ.
        missing = reverse(pattern.name, kwargs={k: _missing(v) for k, v in kwargs.items()})
        for method in ("get", "post"):
            response = getattr(client, method)(url, FORM)
            assert secret not in response.content.decode()
            expected = getattr(client, method)(missing, FORM).status_code
            # 404 wherever the route takes the method; where it does not, 405 before any
            # lookup, for any id, so it tells nothing either.
            assert (url, method, response.status_code) == (url, method, expected)
            assert expected in (404, 405)
        assert 404 in {client.get(url).status_code, client.post(url, FORM).status_code}
        checked.append(pattern.name)

    assert len(checked) == len(DASHBOARD_PATTERNS) - len(UNSCOPED)
    # Nothing of the owner's changed: still there, enabled, same secret, key active.
    endpoint.refresh_from_db()
    assert (endpoint.is_enabled, endpoint.secret) == (True, secret)
    assert Delivery.objects.get().status == "failed"
    assert ApiKey.objects.get().is_active
    assert OAuthClient.objects.exists()
    assert Event.objects.count() == 1  # no test event was sent
    assert Inspector.objects.get().answer == Inspector.Answer.OK


def test_it_lists_only_the_visitors_own_objects(
    outsider: User, owned: dict[str, str | int]
) -> None:
    client = Client()
    client.force_login(outsider)
    for url in ("/webhooks/", "/events/", "/api-keys/"):
        page = client.get(url).content.decode()
        for value in ("endpoint", "event", "delivery"):
            assert str(owned[value]) not in page
        assert "Owner&#x27;s key" not in page and "Owner's key" not in page
    assert (
        client.get(f"/webhooks/?event=receipts.update&before={owned['key_id']}").status_code == 200
    )
