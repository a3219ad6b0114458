"""Outbound calls made for a web request (issue 14, item 2): a merchant holds at most
MERCHANT_MAX_OUTBOUND_CALLS web threads waiting on its URLs, and the inspector's slow answer
holds one for a few seconds only. Real HTTP: a live server and receivers on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pytest
import requests
from django.test import Client

from accounts import outbound
from accounts.models import ApiKey, Merchant, User
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver
from tooling.models import Inspector, LoyaltyApp

pytestmark = pytest.mark.django_db(transaction=True)


def post(url: str, body: Any, key: str) -> requests.Response:
    return requests.post(url, json=body, headers={"authorization": f"Bearer {key}"}, timeout=20)


def one_more_while_held(
    url: str, body: Any, key: str, receiver: Receiver, holders: int
) -> tuple[list[requests.Response], requests.Response]:
    """`holders` calls that reach the (slow) receiver and wait there, then one more call.

    The extra call is made only once the receiver has every holder's request, so the holders
    are certainly in flight: under load, calls merely started together can arrive one after
    another and each find a free slot.
    """
    with ThreadPoolExecutor(holders) as pool:
        held = [pool.submit(post, url, body, key) for _ in range(holders)]
        deadline = time.monotonic() + 15
        while len(receiver.requests) < holders and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(receiver.requests) == holders, "the holders never reached the receiver"
        extra = post(url, body, key)
        return [future.result() for future in held], extra


def test_it_answers_429_to_a_third_test_send_while_two_wait_for_a_hanging_receiver(
    live_server: Any,
    merchant: Merchant,
    outsider_merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    redis_conn: Any,
    settings: Any,
) -> None:
    settings.MERCHANT_MAX_OUTBOUND_CALLS = 2
    receiver.default = Answer(200, b"ok", delay=4.0)
    endpoint = make_endpoint(receiver.url())
    key = ApiKey.issue(merchant, "POS")[1]
    url = f"{live_server.url}/api/v1/webhooks/{endpoint.public_id}/test"

    started = time.monotonic()
    held, refused = one_more_while_held(url, {}, key, receiver, holders=2)

    assert [r.status_code for r in held] == [200, 200], [r.text for r in held]
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "too_many_outbound_calls"
    assert "wait for them to finish" in refused.json()["error"]["message"]
    assert refused.headers["Retry-After"] == "5"
    assert len(receiver.requests) == 2  # the refused one sent nothing
    assert time.monotonic() - started < 15
    # Another merchant is not held up by it.
    other = ApiKey.issue(outsider_merchant, "Other")[1]
    quick = requests.get(
        f"{live_server.url}/api/v1/event-types",
        headers={"authorization": f"Bearer {other}"},
        timeout=5,
    )
    assert quick.status_code == 200


def test_it_bounds_loyalty_calls_per_merchant_too(
    live_server: Any, merchant: Merchant, receiver: Receiver, redis_conn: Any, settings: Any
) -> None:
    settings.MERCHANT_MAX_OUTBOUND_CALLS = 1
    receiver.default = Answer(200, b'{"points": 1}', {"content-type": "application/json"}, 3.0)
    LoyaltyApp.objects.create(merchant=merchant, url=receiver.url("/loyalty"))
    key = ApiKey.issue(merchant, "POS")[1]
    url = f"{live_server.url}/api/v1/loyalty/fetch-member-point"

    held, refused = one_more_while_held(url, {"member_code": "M-1"}, key, receiver, holders=1)

    assert [r.status_code for r in held] == [200], [r.text for r in held]
    assert refused.status_code == 429, refused.text
    assert len(receiver.requests) == 1


def test_it_gives_the_slot_back_after_the_call(
    merchant: Merchant, receiver: Receiver, redis_conn: Any, settings: Any
) -> None:
    settings.MERCHANT_MAX_OUTBOUND_CALLS = 1
    for _ in range(3):
        with outbound.merchant_slot(merchant):
            pass
    assert redis_conn.zcard(f"webhooks:outbound:{merchant.pk}") == 0


def test_it_tells_the_dashboard_user_to_wait(
    owner: User,
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    redis_conn: Any,
    settings: Any,
) -> None:
    settings.MERCHANT_MAX_OUTBOUND_CALLS = 2
    endpoint = make_endpoint(receiver.url())
    client = Client()
    client.force_login(owner)
    with ExitStack() as held:
        for _ in range(2):  # two test sends of the merchant's are waiting elsewhere
            held.enter_context(outbound.merchant_slot(merchant))
        inline = client.post(f"/webhooks/{endpoint.public_id}/test/", headers={"X-Inline": "1"})
    assert inline.status_code == 429
    assert "wait for them to finish" in inline.content.decode()
    assert receiver.requests == []
    # Free again: the next test send goes out.
    sent = client.post(f"/webhooks/{endpoint.public_id}/test/", headers={"X-Inline": "1"})
    assert sent.status_code == 200 and len(receiver.requests) == 1


def test_it_holds_a_web_thread_only_a_few_seconds_for_a_slow_inspector(
    live_server: Any, merchant: Merchant, settings: Any
) -> None:
    settings.INSPECTOR_SLOW_MAX_SECONDS = 2
    inspector = Inspector.objects.create(
        merchant=merchant, name="Slow", answer=Inspector.Answer.SLOW, slow_seconds=35
    )
    started = time.monotonic()
    answer = requests.post(f"{live_server.url}{inspector.path}", data=b"{}", timeout=10)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200 and answer.json() == {"received": True, "slow": 2}
    assert 2 <= elapsed < 5
