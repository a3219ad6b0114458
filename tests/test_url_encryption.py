"""Basic-auth credentials in URLs are encrypted at rest, like signing secrets: webhook URLs,
one-off URLs (on the event and its delivery) and loyalty app URLs. The worker and the loyalty
call still send the right Authorization header to a real receiver."""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.apps import apps
from django.db import connection, models
from django.test import Client

from accounts.models import ApiKey, Merchant
from deliveries import emit, emit_many
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from tests.conftest import Receiver
from tooling.models import LoyaltyApp

# Real workers read what the test wrote: every test commits.
pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "s3cret-pass"
BASIC = "Basic " + base64.b64encode(f"shop:{PASSWORD}".encode()).decode()


def raw_column(model: type[models.Model], field: str, pk: int) -> str:
    """What the database holds, read past the ORM."""
    qn = connection.ops.quote_name
    column = model._meta.get_field(field).column
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {qn(column)} FROM {qn(model._meta.db_table)} WHERE {qn('id')} = %s", [pk]
        )
        return cursor.fetchone()[0]


def with_password(receiver: Receiver, path: str = "/hook") -> str:
    return receiver.url(path).replace("http://", f"http://shop:{PASSWORD}@")


def test_it_encrypts_a_webhook_url_with_a_password_and_sends_basic_auth(
    make_endpoint: Callable[..., Endpoint],
    merchant: Merchant,
    receiver: Receiver,
    work: Callable[..., None],
) -> None:
    url = with_password(receiver)
    endpoint = make_endpoint(url)
    stored = raw_column(Endpoint, "url", endpoint.pk)
    assert PASSWORD not in stored and "shop" not in stored
    assert stored.startswith("fernet:")
    assert Endpoint.objects.get(pk=endpoint.pk).url == url

    emit(merchant, "receipts.update", {"n": 1})
    work(until=lambda: len(receiver.requests) == 1)
    assert receiver.requests[0].headers["authorization"] == BASIC


def test_it_keeps_a_url_without_credentials_readable(
    make_endpoint: Callable[..., Endpoint], receiver: Receiver
) -> None:
    endpoint = make_endpoint(receiver.url())
    assert raw_column(Endpoint, "url", endpoint.pk) == receiver.url()


def test_it_encrypts_a_one_off_url_from_the_api_and_sends_basic_auth(
    merchant: Merchant, receiver: Receiver, work: Callable[..., None]
) -> None:
    api = Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})
    url = with_password(receiver, "/one-off")
    body = {"type": "receipts.update", "data": {"n": 1}, "webhook_url": url}
    response = api.post("/api/v1/events", json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    event = Event.objects.get()
    delivery = Delivery.objects.get()
    for model, field, pk in ((Event, "webhook_url", event.pk), (Delivery, "url", delivery.pk)):
        stored = raw_column(model, field, pk)
        assert PASSWORD not in stored and stored.startswith("fernet:")
    assert Event.objects.get().webhook_url == url

    work(until=lambda: len(receiver.requests) == 1)
    assert receiver.requests[0].headers["authorization"] == BASIC
    assert Delivery.objects.get().status == Delivery.Status.SUCCEEDED


def test_it_encrypts_one_off_urls_of_a_batch(
    merchant: Merchant, receiver: Receiver, work: Callable[..., None]
) -> None:
    url = with_password(receiver, "/batch")
    emit_many(merchant, [{"type": "receipts.update", "data": {}, "webhook_url": url}] * 2)
    for event in Event.objects.all():
        assert PASSWORD not in raw_column(Event, "webhook_url", event.pk)
    for delivery in Delivery.objects.all():
        assert PASSWORD not in raw_column(Delivery, "url", delivery.pk)
    work(until=lambda: len(receiver.requests) == 2)
    assert {r.headers["authorization"] for r in receiver.requests} == {BASIC}


def test_it_encrypts_a_loyalty_app_url_and_sends_basic_auth(
    merchant: Merchant, receiver: Receiver
) -> None:
    receiver.default.body = b'{"points": 3}'
    app = LoyaltyApp.objects.create(merchant=merchant, url=with_password(receiver, "/loyalty"))
    assert PASSWORD not in raw_column(LoyaltyApp, "url", app.pk)
    pos = Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})
    response = pos.post(
        "/api/v1/loyalty/fetch-member-point", {"member": 1}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert receiver.requests[0].headers["authorization"] == BASIC


@pytest.mark.parametrize(
    ("app_label", "migration"),
    [
        ("endpoints", "0012_encrypt_url_credentials"),
        ("deliveries", "0010_encrypt_url_credentials"),
        ("tooling", "0002_encrypt_url_credentials"),
    ],
)
def test_it_encrypts_urls_stored_in_the_clear_by_a_data_migration(
    merchant: Merchant, receiver: Receiver, app_label: str, migration: str
) -> None:
    url = with_password(receiver)
    endpoint = Endpoint.objects.create(merchant=merchant, url=url)
    event = emit(merchant, "receipts.update", {}, webhook_url=url)
    delivery = Delivery.objects.get(event=event, endpoint=None)
    app = LoyaltyApp.objects.create(merchant=merchant, url=url)
    rows: list[tuple[type[models.Model], str, int]] = [
        (Endpoint, "url", endpoint.pk),
        (Event, "webhook_url", event.pk),
        (Delivery, "url", delivery.pk),
        (LoyaltyApp, "url", app.pk),
    ]
    rows = [row for row in rows if row[0]._meta.app_label == app_label]
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:  # as rows written before encryption
        for model, field, pk in rows:
            column = qn(model._meta.get_field(field).column)
            cursor.execute(
                f"UPDATE {qn(model._meta.db_table)} SET {column} = %s WHERE {qn('id')} = %s",
                [url, pk],
            )
    module: Any = importlib.import_module(f"{app_label}.migrations.{migration}")
    module.encrypt_url_credentials(apps, None)
    for model, field, pk in rows:
        assert raw_column(model, field, pk).startswith("fernet:")
        assert getattr(model.objects.get(pk=pk), field) == url
