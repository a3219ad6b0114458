"""Nothing a receiver answers can fail the recording of a delivery, its batch or a worker job.

Issue 13, item 1: a `Retry-After` out of range or with a non-ASCII digit raised out of
`record()`, and a NUL byte in a body made PostgreSQL refuse the whole batch; the pump job
died, the batch's outcomes were lost and those deliveries were sent again a minute later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone
from rq.registry import FailedJobRegistry

from accounts.models import Merchant
from deliveries import emit
from deliveries.engine import send_test
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import Endpoint
from lib import policy
from tests.conftest import Answer, Receiver

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = {
    "/huge-retry-after": Answer(429, b"slow down", {"Retry-After": "99999999999999"}),
    "/superscript-retry-after": Answer(503, b"busy", {"Retry-After": "\u00b2"}),
    "/nul-body": Answer(200, b"ok\x00\xff\xfe not utf-8"),
    "/nul-error": Answer(500, b"\x00" * 64),
}


@pytest.fixture
def hostile() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


def _failed_jobs() -> int:
    return FailedJobRegistry(queue=django_rq.get_queue("default")).count


def test_it_records_every_result_of_a_batch_whatever_the_receivers_answer(
    merchant: Merchant,
    hostile: Receiver,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Callable[..., None],
) -> None:
    hostile.routes = dict(HOSTILE)
    endpoints = {path: make_endpoint(hostile.url(path)) for path in HOSTILE}
    healthy = make_endpoint(receiver.url("/healthy"))
    event = emit(merchant, "receipts.update", {"n": 1})
    started = timezone.now()

    work(until=lambda: not Delivery.objects.filter(status="delivering").exists(), timeout=20)

    deliveries = {d.endpoint_id: d for d in Delivery.objects.filter(event=event)}
    assert deliveries[healthy.pk].status == "succeeded"
    huge = deliveries[endpoints["/huge-retry-after"].pk]
    assert huge.status == "pending" and huge.last_status_code == 429
    # Clamped to 24 hours (inside the 48-hour window), not an overflow.
    assert huge.next_attempt_at <= started + policy.MAX_RETRY_AFTER + timedelta(minutes=1)
    superscript = deliveries[endpoints["/superscript-retry-after"].pk]
    assert superscript.status == "pending" and superscript.last_status_code == 503
    assert superscript.next_attempt_at <= timezone.now() + timedelta(minutes=1)
    nul = deliveries[endpoints["/nul-body"].pk]
    assert nul.status == "succeeded"
    logged = DeliveryAttempt.objects.get(delivery=nul)
    assert logged.response_body.startswith("ok\ufffd")
    assert deliveries[endpoints["/nul-error"].pk].status == "pending"
    assert _failed_jobs() == 0
    # Each was sent once: no batch was lost and sent again.
    assert len(hostile.requests) == len(HOSTILE)
    assert len(receiver.requests) == 1


def test_it_answers_a_send_test_to_a_receiver_that_sends_nul_bytes(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(receiver.url())
    receiver.default = Answer(200, b"\x00\x00 nul", {"X-Odd": "a\x01b"})

    delivery = send_test(endpoint)

    assert delivery.status == "succeeded"
    assert "\x00" not in DeliveryAttempt.objects.get(delivery=delivery).response_body


@pytest.mark.parametrize(
    "value",
    ["99999999999999", "9" * 400, "\u00b2", "\u0661\u0662", "Sun, 06 Nov 99999 08:49:37 GMT", "-5"],
)
def test_it_reads_any_retry_after_without_raising(value: str) -> None:
    now = timezone.now()
    wait = policy.parse_retry_after(value, now)
    assert wait is None or timedelta(0) <= wait <= policy.MAX_RETRY_AFTER


def test_it_records_the_rest_of_a_batch_when_giving_back_unsent_claims_fails(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fault injection: giving back the unsent claim fails (a bug, not the database away); the
    # sent delivery of the same batch is still recorded.
    from deliveries.engine import recording
    from deliveries.engine.claiming import Load, claim
    from deliveries.engine.sending import attempt, unsent

    make_endpoint(receiver.url("/ok"))
    for n in range(2):
        emit(merchant, "receipts.update", {"n": n})
    first, second = claim("w-release", 2, Load(capacity=10))

    def broken_release(token: str, ids: list[int]) -> int:
        raise RuntimeError("release broke")

    monkeypatch.setattr(recording, "release", broken_release)
    written = recording.record("w-release", [attempt(first), unsent(second, "not sent")])

    assert written is True
    assert Delivery.objects.get(pk=first.pk).status == "succeeded"
    assert Delivery.objects.get(pk=second.pk).status == "delivering"  # back at its lease's end
