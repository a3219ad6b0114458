"""What the admin shows of URLs: query-string secrets (`?token=...`) and inspector catch URLs
(the URL is the credential) are masked on every page for endpoints, deliveries, attempts,
loyalty apps and calls; the OAuth toolkit's own admin is not offered."""

from __future__ import annotations

from django.test import Client

from accounts.models import Merchant
from deliveries import emit
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import Endpoint
from lib.http import mask_url
from tooling.models import Inspector, LoyaltyApp, LoyaltyCall

TOKEN = "q8ZsecretQueryToken"
QUERY_URL = f"https://hooks.example.com/in?shop=1&token={TOKEN}"


def pages(staff_client: Client, *paths: str) -> str:
    html = []
    for path in paths:
        response = staff_client.get(path)
        assert response.status_code == 200, path
        html.append(response.content.decode())
    return "\n".join(html)


def test_it_masks_query_secrets_of_endpoints(staff_client: Client, merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url=QUERY_URL)
    html = pages(
        staff_client,
        "/admin/endpoints/endpoint/",
        f"/admin/endpoints/endpoint/{endpoint.pk}/change/",
    )
    assert TOKEN not in html
    assert "token=****" in html


def test_it_masks_inspector_catch_urls(staff_client: Client, merchant: Merchant) -> None:
    inspector = Inspector.objects.create(merchant=merchant, name="Catcher")
    url = f"http://127.0.0.1:8000{inspector.path}"
    endpoint = Endpoint.objects.create(merchant=merchant, url=url)
    html = pages(
        staff_client,
        "/admin/endpoints/endpoint/",
        f"/admin/endpoints/endpoint/{endpoint.pk}/change/",
        "/admin/tooling/inspector/",
        f"/admin/tooling/inspector/{inspector.pk}/change/",
    )
    assert inspector.token not in html
    assert "/catch/****/" in html


def test_it_masks_query_secrets_of_deliveries_and_attempts(
    staff_client: Client, merchant: Merchant
) -> None:
    event = emit(merchant, "receipts.update", {}, webhook_url=QUERY_URL)
    delivery = Delivery.objects.get(event=event)
    attempt = DeliveryAttempt.objects.create(
        delivery=delivery, number=1, url=mask_url(QUERY_URL), response_status=200
    )
    html = pages(
        staff_client,
        "/admin/deliveries/delivery/",
        f"/admin/deliveries/delivery/{delivery.pk}/change/",
        "/admin/deliveries/deliveryattempt/",
        f"/admin/deliveries/deliveryattempt/{attempt.pk}/change/",
    )
    assert TOKEN not in html
    assert "token=****" in html


def test_it_masks_query_secrets_of_loyalty_apps_and_calls(
    staff_client: Client, merchant: Merchant
) -> None:
    app = LoyaltyApp.objects.create(merchant=merchant, url=QUERY_URL)
    call = LoyaltyCall.objects.create(
        merchant=merchant, action="fetch_member_point", message_id="m1", url=mask_url(QUERY_URL)
    )
    html = pages(
        staff_client,
        "/admin/tooling/loyaltyapp/",
        f"/admin/tooling/loyaltyapp/{app.pk}/change/",
        "/admin/tooling/loyaltycall/",
        f"/admin/tooling/loyaltycall/{call.pk}/change/",
    )
    assert TOKEN not in html
    assert "token=****" in html


def test_it_does_not_offer_the_oauth_toolkits_own_admin(staff_client: Client) -> None:
    index = staff_client.get("/admin/").content.decode()
    assert "oauth2_provider" not in index
    for model in ("application", "accesstoken", "refreshtoken", "grant", "idtoken"):
        assert staff_client.get(f"/admin/oauth2_provider/{model}/").status_code == 404
    assert staff_client.get("/admin/accounts/oauthclient/").status_code == 200
