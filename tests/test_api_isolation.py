"""Every API path that names an object answers 404 to another merchant's key, found by walking
the URL patterns, so a new route cannot be added without this test covering it."""

from __future__ import annotations

from django.test import Client
from django.urls import URLPattern, reverse

from accounts.models import ApiKey, Merchant
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from webhooks_project import api_urls


def test_it_answers_404_for_every_object_path_of_another_merchant(
    merchant: Merchant, outsider_merchant: Merchant
) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/x")
    event = Event.objects.create_event(merchant, "receipts.update", {})
    delivery = Delivery.objects.create(
        merchant=merchant, event=event, endpoint=endpoint, status="failed"
    )
    owned = {"api-webhook": endpoint, "api-event": event, "api-delivery": delivery}
    outsider = Client(
        headers={"authorization": f"Bearer {ApiKey.issue(outsider_merchant, 'k')[1]}"}
    )
    walked = 0
    for pattern in api_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        if "public_id" not in pattern.pattern.converters:
            continue
        if pattern.name.startswith(("api-merchant", "api-operator")):
            continue  # the platform's paths: a merchant key gets 403 (test_operator_api.py)
        owner_object = next(obj for prefix, obj in owned.items() if pattern.name.startswith(prefix))
        path = reverse(pattern.name, kwargs={"public_id": owner_object.public_id})
        codes = []
        for method in ("get", "post", "patch", "delete"):
            response = getattr(outsider, method)(path, content_type="application/json")
            # 405 for a method the path never takes, whoever asks: it reveals nothing.
            assert response.status_code in (404, 405), (method, path, response.status_code)
            codes.append(response.status_code)
        assert 404 in codes, path
        walked += 1
    assert walked == 8  # webhook, its test/rotate-secret/recover/replay, event, delivery, retry
    endpoint.refresh_from_db()
    delivery.refresh_from_db()
    assert endpoint.is_enabled and delivery.status == "failed"
