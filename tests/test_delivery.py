"""The delivery engine end to end: real Redis, real RQ worker, real receivers on 127.0.0.1."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import django_rq
import pytest
from django.core import mail
from django.db import transaction
from standardwebhooks.webhooks import Webhook

from accounts.models import Merchant
from deliveries import emit, engine, jobs
from deliveries.engine import disable_endpoint, resend, retry_failed, send_test
from deliveries.engine.cache import ClaimCache
from deliveries.engine.claiming import Load, claim
from deliveries.models import Delivery, DeliveryAttempt, Event
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def statuses() -> list[str]:
    return list(Delivery.objects.order_by("id").values_list("status", flat=True))


def all_done() -> bool:
    return not Delivery.objects.filter(status__in=["pending", "delivering"]).exists()


@pytest.fixture
def fast_retries(settings: Any) -> None:
    settings.WEBHOOK_RETRY_BASE_SECONDS = 1


def test_it_delivers_to_every_subscribed_enabled_endpoint(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    a = make_endpoint(receiver.url("/a"))
    b = make_endpoint(receiver.url("/b"), types=("receipts.update", "products.update"))
    disable_endpoint(make_endpoint(receiver.url("/disabled")))
    make_endpoint(receiver.url("/unsubscribed"), types=("products.update",))

    event = emit(merchant, "receipts.update", {"receipt_no": "R-1", "total": "12.50"})
    work(until=all_done)

    assert sorted(r.path for r in receiver.requests) == ["/a", "/b"]
    assert statuses() == ["succeeded", "succeeded"]
    secrets = {"/a": a.secret, "/b": b.secret}
    for request in receiver.requests:
        payload = Webhook(secrets[request.path]).verify(request.body, request.headers)
        assert payload == {
            "id": event.public_id,
            "type": "receipts.update",
            "created_at": event.created_at.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ),
            "merchant_id": merchant.public_id,
            "sequence": 1,
            "data": {"receipt_no": "R-1", "total": "12.50"},
        }
        assert request.headers["webhook-id"] == event.public_id
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("POS-Webhooks/")


def test_it_omits_data_in_thin_payloads(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(receiver.url(), payload_style=Endpoint.PayloadStyle.THIN)
    event = emit(merchant, "receipts.update", {"secret_total": "1"})
    work(until=all_done)
    body = receiver.requests[0].json()
    assert body["id"] == event.public_id and "data" not in body


def test_it_sends_to_a_one_off_webhook_url_signed_with_the_merchant_secret(
    merchant: Merchant, receiver: Receiver, work: Any
) -> None:
    event = emit(
        merchant, "transaction.captured", {"id": "txn_1"}, webhook_url=receiver.url("/inv")
    )
    work(until=all_done)
    [request] = receiver.requests
    assert request.path == "/inv"
    assert Webhook(merchant.webhook_secret).verify(request.body, request.headers)["id"] == (
        event.public_id
    )


def test_it_retries_a_500_with_the_same_id_and_a_new_timestamp(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
    settings: Any,
) -> None:
    settings.WEBHOOK_RETRY_BASE_SECONDS = 2
    make_endpoint(receiver.url())
    receiver.answers = [Answer(500, b"boom")]
    emit(merchant, "receipts.update", {})
    work(until=all_done)

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert second.at - first.at >= 2 * 0.8  # the policy's first delay, less its jitter
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 200)
    attempts = list(DeliveryAttempt.objects.order_by("number"))
    assert [(a.number, a.response_status, a.response_body) for a in attempts] == [
        (1, 500, "boom"),
        (2, 200, "ok"),
    ]


def test_it_fails_a_404_at_once(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(receiver.url())
    receiver.default = Answer(404, b"no such hook")
    emit(merchant, "receipts.update", {})
    work(until=all_done)
    delivery = Delivery.objects.get()
    assert len(receiver.requests) == 1
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 404)


def test_it_does_not_follow_redirects(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(receiver.url())
    receiver.default = Answer(302, b"", {"location": receiver.url("/elsewhere")})
    emit(merchant, "receipts.update", {})
    work(until=all_done)
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert Delivery.objects.get().status == "failed"


def test_it_disables_an_endpoint_that_answers_410(
    merchant: Merchant,
    owner: Any,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
) -> None:
    endpoint = make_endpoint(receiver.url())
    receiver.default = Answer(410, b"gone")
    emit(merchant, "receipts.update", {})
    work(until=all_done)
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled
    assert endpoint.disabled_reason == Endpoint.DisabledReason.GONE
    assert endpoint.status_label == "Auto-disabled"
    emit(merchant, "receipts.update", {})
    work()
    assert len(receiver.requests) == 1  # nothing more goes to a disabled endpoint
    assert any("disabled" in m.subject.lower() for m in mail.outbox)


def test_it_honours_retry_after(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
    fast_retries: None,
) -> None:
    make_endpoint(receiver.url())
    receiver.answers = [Answer(429, b"slow down", {"Retry-After": "2"})]
    emit(merchant, "receipts.update", {})
    work(until=all_done)
    first, second = receiver.requests
    assert second.at - first.at >= 2.0
    assert Delivery.objects.get().status == "succeeded"


def test_it_records_a_timeout_as_408(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
) -> None:
    make_endpoint(receiver.url(), timeout_seconds=1, retry_policy="fixed", fixed_retries=0)
    receiver.default = Answer(200, b"late", delay=3)
    emit(merchant, "receipts.update", {})
    work(until=all_done)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == ("failed", 408)
    assert delivery.last_error == "timed out after 1 s"
    attempt = DeliveryAttempt.objects.get()
    assert attempt.response_status == 408 and attempt.duration_ms < 2500


@pytest.fixture
def drip_server() -> Iterator[str]:
    """Answers one byte every 0.1 s, for far longer than any deadline."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.1)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/drip"
    stop.set()
    server.close()


def test_it_cuts_a_dripping_answer_at_the_deadline(
    merchant: Merchant, drip_server: str, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(drip_server, timeout_seconds=1, retry_policy="fixed", fixed_retries=0)
    emit(merchant, "receipts.update", {})
    work(until=all_done)
    delivery = Delivery.objects.get()
    assert delivery.last_status_code == 408
    assert delivery.last_duration_ms is not None and delivery.last_duration_ms < 2000


def test_it_stores_a_huge_answer_truncated_to_64_kib(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(receiver.url())
    receiver.default = Answer(200, b"x" * (10 * 1024 * 1024))
    emit(merchant, "receipts.update", {})
    work(until=all_done)
    attempt = DeliveryAttempt.objects.get()
    assert len(attempt.response_body) == 64 * 1024
    assert attempt.response_truncated
    assert Delivery.objects.get().status == "succeeded"


@pytest.mark.parametrize(
    ("mode", "logged"),
    [("full", [500, 200]), ("error", [500]), ("none", [])],
)
def test_it_logs_attempts_by_the_endpoints_log_mode(
    mode: str,
    logged: list[int],
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
    fast_retries: None,
) -> None:
    make_endpoint(receiver.url(), log_mode=mode)
    receiver.answers = [Answer(500)]
    emit(merchant, "receipts.update", {})
    work(until=all_done)
    statuses_logged = list(
        DeliveryAttempt.objects.order_by("number").values_list("response_status", flat=True)
    )
    assert statuses_logged == logged
    delivery = Delivery.objects.get()  # the delivery's own state is kept whatever the mode
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 200)


def test_it_masks_basic_auth_in_the_log_and_sends_it_to_the_receiver(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    url = receiver.url().replace("http://", "http://shop:pa55word@")
    make_endpoint(url)
    emit(merchant, "receipts.update", {})
    work(until=all_done)
    assert receiver.requests[0].headers["authorization"].startswith("Basic ")
    attempt = DeliveryAttempt.objects.get()
    assert "pa55word" not in attempt.url and "pa55word" not in str(attempt.request_headers)


def test_it_auto_disables_an_endpoint_failing_for_its_whole_window(
    merchant: Merchant,
    owner: Any,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
    settings: Any,
    fast_retries: None,
) -> None:
    settings.WEBHOOK_RETRY_JITTER = 0  # attempts at 0, 1, 3 and 7 s
    settings.WEBHOOK_AUTO_DISABLE_SECONDS = 6  # so: warned at 3 s, disabled at 7 s
    endpoint = make_endpoint(receiver.url())
    receiver.default = Answer(503, b"down")
    emit(merchant, "receipts.update", {})

    def disabled() -> bool:
        endpoint.refresh_from_db()
        return not endpoint.is_enabled

    work(until=disabled, timeout=30)
    assert endpoint.disabled_reason == Endpoint.DisabledReason.FAILING
    assert endpoint.status_label == "Auto-disabled"
    subjects = [m.subject for m in mail.outbox]
    assert any(s.startswith("Webhook failing") for s in subjects)
    assert any(s.startswith("Webhook disabled") for s in subjects)
    assert all(m.to == ["owner@example.com"] for m in mail.outbox)
    # What was waiting is kept, and comes back when the merchant retries after re-enabling.
    delivery = Delivery.objects.get()
    assert delivery.status in ("failed", "cancelled")
    receiver.default = Answer(200)
    endpoint.enable()
    assert retry_failed(endpoint, since=endpoint.created_at) == 1
    work(until=all_done)
    assert Delivery.objects.get().status == "succeeded"


def test_it_resets_the_failure_clock_on_success(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
    fast_retries: None,
) -> None:
    endpoint = make_endpoint(receiver.url())
    receiver.answers = [Answer(500)]
    emit(merchant, "receipts.update", {})
    work(until=lambda: Delivery.objects.filter(attempts=1, status="pending").exists())
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None
    work(until=all_done)
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_it_gives_up_after_the_fixed_policys_retries(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(receiver.url(), retry_policy="fixed", fixed_retries=2, fixed_cooldown_seconds=1)
    receiver.default = Answer(500)
    emit(merchant, "receipts.update", {})
    work(until=all_done)
    times = [r.at for r in receiver.requests]
    assert len(times) == 3
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))
    assert Delivery.objects.get().status == "failed"


def test_it_enqueues_nothing_when_the_transaction_rolls_back(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], redis_conn: Any
) -> None:
    make_endpoint(receiver.url())
    with pytest.raises(RuntimeError), transaction.atomic():
        emit(merchant, "receipts.update", {})
        raise RuntimeError("the POS sale was cancelled")
    assert django_rq.get_queue("default").count == 0
    assert not redis_conn.exists(jobs.PUMP_QUEUED_KEY)
    assert not Event.objects.exists() and not Delivery.objects.exists()


def test_it_restores_pending_deliveries_after_redis_is_flushed(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    work: Any,
    redis_conn: Any,
) -> None:
    make_endpoint(receiver.url())
    for n in range(20):
        emit(merchant, "receipts.update", {"n": n})
    assert django_rq.get_queue("default").count == 1  # one pump job, not one per delivery
    redis_conn.flushall()
    work(until=all_done)
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 20
    assert len(receiver.requests) == 20


def test_it_sends_a_test_synchronously(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(receiver.url())
    receiver.default = Answer(202, b'{"received": true}')
    delivery = send_test(endpoint)
    assert delivery.status == "succeeded" and delivery.last_status_code == 202
    assert delivery.last_duration_ms is not None
    attempt = delivery.attempt_log.get()
    assert attempt.response_body == '{"received": true}'
    body = receiver.requests[0].json()
    assert body["type"] == "webhook.test"


def test_it_retries_one_delivery_and_resends_an_event(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    make_endpoint(receiver.url())
    receiver.answers = [Answer(400, b"bad")]
    event = emit(merchant, "receipts.update", {})
    work(until=all_done)
    delivery = Delivery.objects.get()
    assert delivery.status == "failed"
    assert engine.retry_now(Delivery.objects.filter(pk=delivery.pk)) == 1
    work(until=all_done)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert resend(event) == 1
    work(until=all_done)
    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_it_signs_with_both_keys_during_a_rotation(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    endpoint = make_endpoint(receiver.url())
    old = endpoint.secret
    new = endpoint.rotate_secret()
    emit(merchant, "receipts.update", {})
    work(until=all_done)
    request = receiver.requests[0]
    assert len(request.headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        Webhook(secret).verify(request.body, request.headers)


def test_it_sends_nothing_to_a_disabled_webhook_on_resend(
    merchant: Merchant, receiver: Receiver, make_endpoint: Callable[..., Endpoint], work: Any
) -> None:
    endpoint = make_endpoint(receiver.url())
    event = emit(merchant, "receipts.update", {})
    work(until=all_done)
    disable_endpoint(endpoint)
    assert resend(event) == 0
    assert engine.retry_now(Delivery.objects.all(), include_succeeded=True) == 0
    work()
    assert len(receiver.requests) == 1


def test_it_keeps_the_events_a_claim_needs_when_the_workers_cache_is_full(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ClaimCache, "MAX_EVENTS", 2)
    make_endpoint(receiver.url("/a"))
    make_endpoint(receiver.url("/b"))
    first, second, third = (emit(merchant, "receipts.update", {"n": n}) for n in range(3))
    cache = ClaimCache()

    one = claim("w1", 1, Load(64), cache)
    # The other delivery of the cached event, plus two events the cache must make room for.
    rest = claim("w1", 5, Load(64), cache)

    assert [d.event.public_id for d in one] == [first.public_id]
    assert sorted(d.event.public_id for d in rest) == sorted(
        [first.public_id] + [second.public_id, third.public_id] * 2
    )
    assert all(d.event.data == {"n": n} for d in rest for n in [d.event.sequence - 1])
