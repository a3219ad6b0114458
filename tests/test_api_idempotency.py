"""Idempotency-Key: a POS retrying after a network error gets its event back, never a second."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, Merchant
from deliveries import ingest
from deliveries.models import Delivery, Event, IdempotencyKey
from endpoints.models import Endpoint
from operations import retention

EVENTS = "/api/v1/events"
BATCH = "/api/v1/events/batch"
RECEIPT = {"type": "receipts.update", "data": {"receipt": "R-1001", "total": "9.99"}}


@pytest.fixture
def key(merchant: Merchant) -> str:
    return ApiKey.issue(merchant, "POS")[1]


@pytest.fixture
def api(key: str) -> Client:
    return Client(headers={"authorization": f"Bearer {key}"})


@pytest.fixture
def endpoint(make_endpoint: Callable[..., Endpoint]) -> Endpoint:
    return make_endpoint("https://example.com/hook")


def post(api: Client, body: Any, idempotency_key: str | None = None, path: str = EVENTS) -> Any:
    headers = {"idempotency-key": idempotency_key} if idempotency_key is not None else {}
    return api.post(path, json.dumps(body), content_type="application/json", headers=headers)


def test_it_answers_a_retry_with_the_same_event_and_stores_no_second(
    api: Client, endpoint: Endpoint
) -> None:
    first = post(api, RECEIPT, "pos-1:R-1001")
    assert first.status_code == 202, first.content
    assert first["Idempotent-Replayed"] == "false"

    # The same event, its keys in another order: the same request.
    retry = post(api, {"data": RECEIPT["data"], "type": RECEIPT["type"]}, "pos-1:R-1001")

    assert retry.status_code == 202
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert Event.objects.count() == 1 and Delivery.objects.count() == 1
    row = IdempotencyKey.objects.get()
    assert row.event.public_id == first.json()["event"]["id"]
    assert len(row.fingerprint) == 64


def test_it_treats_a_form_encoded_retry_of_a_json_event_as_the_same_request(
    api: Client, endpoint: Endpoint
) -> None:
    first = post(api, RECEIPT, "k-form")
    retry = api.post(
        EVENTS,
        "type=receipts.update&data=" + json.dumps(RECEIPT["data"]),
        content_type="application/x-www-form-urlencoded",
        headers={"idempotency-key": "k-form"},
    )
    assert retry.status_code == 202, retry.content
    assert retry.json()["event"]["id"] == first.json()["event"]["id"]
    assert Event.objects.count() == 1


def test_it_answers_409_for_a_key_reused_with_a_different_event(
    api: Client, endpoint: Endpoint
) -> None:
    first = post(api, RECEIPT, "k-409")
    other = {"type": "receipts.update", "data": {"receipt": "R-1002", "total": "1.00"}}

    response = post(api, other, "k-409")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert "Idempotency-Key" in error["fields"]
    assert list(Event.objects.values_list("public_id", flat=True)) == [first.json()["event"]["id"]]
    assert Delivery.objects.count() == 1


def test_it_stores_separate_events_without_a_key_or_with_different_keys(api: Client) -> None:
    assert post(api, RECEIPT).status_code == 202
    assert post(api, RECEIPT).status_code == 202
    assert post(api, RECEIPT, "a").status_code == 202
    assert post(api, RECEIPT, "b").status_code == 202
    assert Event.objects.count() == 4


def test_it_scopes_keys_to_the_merchant(api: Client, outsider_merchant: Merchant) -> None:
    theirs = Client(headers={"authorization": f"Bearer {ApiKey.issue(outsider_merchant, 'x')[1]}"})
    mine = post(api, RECEIPT, "shared-key").json()["event"]
    other = post(theirs, {"type": "products.update"}, "shared-key")
    assert other.status_code == 202
    assert other.json()["event"]["id"] != mine["id"]
    assert other.json()["event"]["merchant_id"] == outsider_merchant.public_id


@pytest.mark.parametrize("bad", ["", "x" * 256, "has space", "tab\there"])
def test_it_refuses_a_malformed_key(api: Client, bad: str) -> None:
    response = post(api, RECEIPT, bad)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["fields"]
    assert not Event.objects.exists()


def test_it_lets_a_key_be_reused_after_24_hours(api: Client, endpoint: Endpoint) -> None:
    first = post(api, RECEIPT, "k-old").json()["event"]
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))

    other = {"type": "receipts.update", "data": {"receipt": "R-2000"}}
    response = post(api, other, "k-old")

    assert response.status_code == 202
    assert response["Idempotent-Replayed"] == "false"
    second = response.json()["event"]
    assert second["id"] != first["id"] and second["data"] == other["data"]
    row = IdempotencyKey.objects.get()
    assert row.event.public_id == second["id"]
    # ... and the new event is now what that key replays.
    assert post(api, other, "k-old").json()["event"]["id"] == second["id"]
    assert Event.objects.count() == 2


def test_it_still_replays_just_under_24_hours(api: Client) -> None:
    first = post(api, RECEIPT, "k-23h").json()["event"]
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=23, minutes=59))
    assert post(api, RECEIPT, "k-23h").json()["event"]["id"] == first["id"]
    assert post(api, {"type": "products.update"}, "k-23h").status_code == 409


def test_it_prunes_expired_keys_in_the_retention_job(api: Client) -> None:
    post(api, RECEIPT, "old")
    post(api, RECEIPT, "fresh")
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))

    assert retention.prune(dry_run=True).idempotency_keys == 1
    result = retention.prune(batch_size=1)

    assert result.idempotency_keys == 1
    assert "1 idempotency keys" in result.summary()
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]
    assert Event.objects.count() == 2  # the events are delivery logs: kept by their own period


# --- batches ---------------------------------------------------------------------------


def test_it_replays_batch_items_by_key_and_stores_only_the_new_ones(
    api: Client, endpoint: Endpoint
) -> None:
    items = [
        {**RECEIPT, "idempotency_key": "b-1"},
        {"type": "receipts.update", "data": {"n": 2}},
        {"type": "receipts.update", "data": {"n": 3}, "idempotency_key": "b-3"},
    ]
    first = post(api, {"events": items}, path=BATCH).json()["events"]

    # The POS lost the answer and retries, with one more event at the end.
    more = {"type": "receipts.update", "data": {"n": 4}, "idempotency_key": "b-4"}
    retry = post(api, {"events": [items[0], items[2], more]}, path=BATCH)

    assert retry.status_code == 202, retry.content
    refs = retry.json()["events"]
    assert [r["id"] for r in refs[:2]] == [first[0]["id"], first[2]["id"]]
    assert [r["replayed"] for r in refs] == [True, True, False]
    assert refs[2]["sequence"] == 4
    assert Event.objects.count() == 4 and Delivery.objects.count() == 4


def test_it_shares_keys_between_single_events_and_batches(api: Client) -> None:
    single = post(api, RECEIPT, "shared").json()["event"]
    batch = post(api, {"events": [{**RECEIPT, "idempotency_key": "shared"}]}, path=BATCH)
    assert batch.json()["events"] == [{"id": single["id"], "sequence": 1, "replayed": True}]


def test_it_refuses_a_whole_batch_with_409_when_a_key_came_with_another_event(
    api: Client, merchant: Merchant
) -> None:
    post(api, RECEIPT, "b-409")
    items = [
        {"type": "receipts.update", "data": {"n": 0}, "idempotency_key": "new"},
        {"type": "receipts.update", "data": {"changed": True}, "idempotency_key": "b-409"},
    ]

    response = post(api, {"events": items}, path=BATCH)

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert set(error["fields"]["events"]) == {"1"}
    assert Event.objects.count() == 1
    assert not IdempotencyKey.objects.filter(key="new").exists()


# --- the race --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_creates_one_event_for_two_concurrent_requests_with_one_key(
    live_server: Any, key: str, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both requests look the key up before either stores it: the database has to decide."""
    rounds = 3
    both_looked = threading.Barrier(2, timeout=20)
    lookups = threading.local()
    real_lookup = ingest._replay_known

    def lookup_then_wait(*args: Any) -> Any:
        found = real_lookup(*args)
        if not getattr(lookups, "done", False):  # a request's first look-up only
            lookups.done = True
            both_looked.wait()
        return found

    monkeypatch.setattr(ingest, "_replay_known", lookup_then_wait)
    lost_races: list[int] = []
    real_ingest_once = ingest._ingest_once

    def counting(*args: Any) -> Any:
        try:
            return real_ingest_once(*args)
        except Exception:
            lost_races.append(1)
            raise

    monkeypatch.setattr(ingest, "_ingest_once", counting)

    def send(body: dict[str, Any], idem: str, out: list[tuple[int, dict[str, Any]]]) -> None:
        request = urllib.request.Request(
            f"{live_server.url}{EVENTS}",
            data=json.dumps(body).encode(),
            headers={
                "authorization": f"Bearer {key}",
                "content-type": "application/json",
                "idempotency-key": idem,
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                out.append((response.status, json.load(response)))
        except urllib.error.HTTPError as exc:
            out.append((exc.code, json.load(exc)))

    for n in range(rounds):
        answers: list[tuple[int, dict[str, Any]]] = []
        body = {"type": "receipts.update", "data": {"n": n}}
        threads = [
            threading.Thread(target=send, args=(body, f"race-{n}", answers)) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [status for status, _ in answers] == [202, 202], answers
        assert answers[0][1]["event"]["id"] == answers[1][1]["event"]["id"]

    assert len(lost_races) == rounds  # every round, one request lost the insert and replayed
    assert Event.objects.count() == rounds
    assert Delivery.objects.count() == rounds
    assert IdempotencyKey.objects.count() == rounds
