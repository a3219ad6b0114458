from __future__ import annotations

from django.test import Client

from accounts.models import Merchant
from endpoints.models import Endpoint


def test_it_lists_and_filters_every_merchants_endpoints(
    staff_client: Client, merchant: Merchant, outsider_merchant: Merchant
) -> None:
    Endpoint.objects.create(merchant=merchant, url="https://owner.example.com/hook")
    Endpoint.objects.create(merchant=outsider_merchant, url="https://bakery.example.com/hook")
    page = staff_client.get("/admin/endpoints/endpoint/")
    assert page.status_code == 200
    assert b"owner.example.com" in page.content
    assert b"bakery.example.com" in page.content
    filtered = staff_client.get(f"/admin/endpoints/endpoint/?merchant__id__exact={merchant.pk}")
    assert b"owner.example.com" in filtered.content
    assert b"bakery.example.com" not in filtered.content


def test_it_bulk_disables_endpoints(staff_client: Client, merchant: Merchant) -> None:
    a = Endpoint.objects.create(merchant=merchant, url="https://a.example.com/hook")
    b = Endpoint.objects.create(merchant=merchant, url="https://b.example.com/hook")
    keep = Endpoint.objects.create(merchant=merchant, url="https://c.example.com/hook")
    response = staff_client.post(
        "/admin/endpoints/endpoint/",
        {"action": "disable_endpoints", "_selected_action": [a.pk, b.pk]},
        follow=True,
    )
    assert b"Disabled 2 endpoint(s)." in response.content
    a.refresh_from_db()
    b.refresh_from_db()
    keep.refresh_from_db()
    assert not a.is_enabled and a.disabled_reason == Endpoint.DisabledReason.STAFF
    assert not b.is_enabled
    assert keep.is_enabled


def test_it_hides_secrets_and_passwords_from_the_endpoint_page(
    staff_client: Client, merchant: Merchant
) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="https://u:hunter22@x.example.com/")
    page = staff_client.get(f"/admin/endpoints/endpoint/{endpoint.pk}/change/")
    assert page.status_code == 200
    assert endpoint.secret.encode() not in page.content
    assert b"hunter22" not in page.content
    assert b"x.example.com" in page.content
    listing = staff_client.get("/admin/endpoints/endpoint/")
    assert b"hunter22" not in listing.content


def test_it_refuses_the_admin_to_merchant_users(client: Client, owner: object) -> None:
    client.force_login(owner)  # type: ignore[arg-type]
    response = client.get("/admin/endpoints/endpoint/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_it_shows_every_model_to_staff(staff_client: Client) -> None:
    for path in (
        "accounts/merchant",
        "accounts/user",
        "accounts/apikey",
        "accounts/oauthclient",
        "catalogue/category",
        "catalogue/eventtype",
        "endpoints/endpoint",
        "deliveries/event",
        "deliveries/delivery",
        "deliveries/deliveryattempt",
        "tooling/inspector",
        "tooling/loyaltyapp",
        "tooling/loyaltycall",
    ):
        assert staff_client.get(f"/admin/{path}/").status_code == 200, path
