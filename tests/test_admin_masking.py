"""Basic-auth passwords in the admin (issue 14, item 5): masked on the delivery pages, and
not searchable in the endpoint or delivery lists."""

from __future__ import annotations

from collections.abc import Callable

from django.test import Client

from accounts.models import Merchant
from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint

PASSWORD = "hunter2-very-secret"


def test_it_masks_a_one_off_urls_password_in_the_delivery_admin(
    staff_client: Client, merchant: Merchant
) -> None:
    event = emit(
        merchant, "receipts.update", {}, webhook_url=f"http://pos:{PASSWORD}@127.0.0.1:9/once"
    )
    delivery = Delivery.objects.get(event=event)

    listing = staff_client.get("/admin/deliveries/delivery/").content.decode()
    page = staff_client.get(f"/admin/deliveries/delivery/{delivery.pk}/change/").content.decode()

    assert delivery.public_id in listing
    for html in (listing, page):
        assert PASSWORD not in html
    assert "http://pos:****@127.0.0.1:9/once" in page


def test_it_does_not_search_inside_urls(
    staff_client: Client, merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(f"http://pos:{PASSWORD}@127.0.0.1:9/hook", description="Till 1")
    emit(merchant, "receipts.update", {})

    found = staff_client.get("/admin/endpoints/endpoint/", {"q": PASSWORD}).content.decode()
    by_description = staff_client.get("/admin/endpoints/endpoint/", {"q": "Till"}).content
    deliveries = staff_client.get("/admin/deliveries/delivery/", {"q": PASSWORD}).content

    assert "0 endpoints" in found and endpoint.public_id not in found
    assert endpoint.masked_url.encode() in by_description
    assert b"0 deliveries" in deliveries
