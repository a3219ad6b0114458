"""Words that say what happened (issue 15, item 6): retry times, counts, one "created"."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Merchant, User
from deliveries import emit
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from endpoints.templatetags.dashboard import until
from tests.conftest import Answer, Receiver


def test_it_says_how_soon_the_next_attempt_is() -> None:
    now = timezone.now()
    assert until(now + timedelta(seconds=30, milliseconds=500)) == "in 30 s"
    assert until(now - timedelta(seconds=2)) == "now"
    assert until(now + timedelta(minutes=5, seconds=1)) == "in 5\xa0minutes"


def test_it_counts_one_delivery_in_the_singular(
    staff_client: Client, make_endpoint: Callable[..., Endpoint], redis_conn: object
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    event = Event.objects.create_event(endpoint.merchant, "receipts.update", {})
    delivery = Delivery.objects.create(
        merchant=endpoint.merchant, event=event, endpoint=endpoint, status="failed", attempts=1
    )
    response = staff_client.post(
        "/admin/deliveries/delivery/",
        {"action": "retry_deliveries", "_selected_action": [delivery.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "Scheduled 1 delivery again." in page
    assert "1 deliveries" not in page


def test_it_says_created_once_for_a_new_api_key(client: Client, owner: User) -> None:
    client.force_login(owner)
    page = client.post("/api-keys/create/", {"name": "Back office"}).content.decode()
    main = page[page.index("<main") :]
    said = re.findall(r">[^<]*\bcreated\b[^<]*<", main)  # in the text, not in ids
    assert len(said) == 1, said  # the heading; no flash message saying it again


@pytest.mark.django_db(transaction=True)
def test_it_tells_a_manual_retry_from_an_automatic_one(
    owner: User,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    make_endpoint(receiver.url(), retry_policy="fixed", fixed_retries=1, fixed_cooldown_seconds=1)
    receiver.answers = [Answer(500), Answer(500)]
    event = emit(merchant, "receipts.update", {"n": 1})
    delivery = event.deliveries.get()
    work(until=lambda: Delivery.objects.get(pk=delivery.pk).status == "failed", timeout=20)
    client = Client()
    client.force_login(owner)

    client.post(f"/deliveries/{delivery.public_id}/retry/")
    work(until=lambda: Delivery.objects.get(pk=delivery.pk).status == "succeeded", timeout=20)

    page = client.get(f"/events/{event.public_id}/").content.decode()
    rows = re.findall(r"<td>(\d)(?: <span[^>]*>\(([a-z ]+)\)</span>)?</td>", page)
    assert rows == [("1", ""), ("2", "retry"), ("3", "manual retry")]
    assert Delivery.objects.get(pk=delivery.pk).manual_retry is False  # made, so cleared
