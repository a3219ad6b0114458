"""API consistency (issue 15, item 15): paging parameters, unknown parameters, `since`, times.

`/webhooks` pages with `page` + `size` (myPOS's style) and `/events` and `/deliveries` with a
cursor + `limit`; `size` and `limit` mean the same everywhere, and a parameter an endpoint
does not know is a 400 that names it instead of being ignored.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, Merchant
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint

MILLIS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture
def api(merchant: Merchant) -> Client:
    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})


@pytest.fixture
def three_events(merchant: Merchant) -> list[Event]:
    return [Event.objects.create_event(merchant, "receipts.update", {"n": i}) for i in range(3)]


def error(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    return response.json()["error"]


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/deliveries"])
def test_it_refuses_page_numbers_on_cursor_lists_naming_the_parameter(
    api: Client, path: str
) -> None:
    body = error(api.get(path, {"page": 2}))
    assert "page" in body["fields"]
    assert "Unknown query parameter 'page'" in body["message"]
    assert "next_cursor" in body["message"]


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/deliveries", "/api/v1/webhooks"])
def test_it_refuses_unknown_query_parameters(api: Client, path: str) -> None:
    body = error(api.get(path, {"colour": "blue"}))
    assert body["fields"] == {"colour": body["message"]}
    assert "Known parameters" in body["message"]


def test_it_takes_size_for_limit_on_events(api: Client, three_events: list[Event]) -> None:
    page = api.get("/api/v1/events", {"size": 2}).json()
    assert len(page["events"]) == 2 and page["has_more"] is True
    assert len(api.get("/api/v1/events", {"limit": 2}).json()["events"]) == 2
    assert "mean the same" in error(api.get("/api/v1/events", {"limit": 2, "size": 3}))["message"]


def test_it_takes_limit_for_size_on_webhooks(api: Client, merchant: Merchant) -> None:
    for i in range(3):
        Endpoint.objects.create(merchant=merchant, url=f"http://127.0.0.1:9/{i}")
    body = api.get("/api/v1/webhooks", {"limit": 2, "page": 2}).json()
    assert body["pagination"] == {"page": 2, "size": 2, "total": 3}
    assert len(body["webhooks"]) == 1


def test_it_accepts_since_as_a_duration_like_the_command(api: Client, merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/hook")
    for hours in (2, 30):
        event = Event.objects.create_event(merchant, "receipts.update", {})
        Delivery.objects.create(
            merchant=merchant,
            event=event,
            endpoint=endpoint,
            status="failed",
            created_at=timezone.now() - timedelta(hours=hours),
        )
    path = f"/api/v1/webhooks/{endpoint.public_id}/recover"
    response = api.post(path, {"since": "24h"}, content_type="application/json")
    assert response.status_code == 202, response.content
    assert response.json() == {"recovered": 1}
    assert (
        "since"
        in error(api.post(path, {"since": "yesterday"}, content_type="application/json"))["fields"]
    )
    # ISO dates keep working.
    response = api.post(path, {"since": "2000-01-01"}, content_type="application/json")
    assert response.json() == {"recovered": 1}  # the other one (the first is pending now)


def test_it_writes_created_at_with_one_precision_everywhere(
    api: Client, merchant: Merchant
) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/hook")
    emitted = api.post(
        "/api/v1/events", {"type": "receipts.update", "data": {}}, content_type="application/json"
    ).json()["event"]
    event = Event.objects.get(public_id=emitted["id"])
    delivery = Delivery.objects.create(merchant=merchant, event=event, endpoint=endpoint)
    body_created_at = json.loads(event.body())["created_at"]

    listed = api.get("/api/v1/events").json()["events"][0]
    detail = api.get(f"/api/v1/events/{event.public_id}").json()["event"]
    one = api.get(f"/api/v1/deliveries/{delivery.public_id}").json()["delivery"]
    for value in (emitted["created_at"], listed["created_at"], detail["created_at"]):
        assert MILLIS_Z.match(value), value
        assert value == body_created_at
    assert MILLIS_Z.match(one["created_at"])
