"""Ordered delivery per key: one at a time per value, in emission order, a failing one holding
back only its own value; a manual retry does not jump ahead unless asked.

With real `run_worker` processes (two, claiming for one endpoint) and a real receiver; the
claim-level tests call `claim` and `record` as a worker does. Deleting the ordering condition
from claims (`in_order_sql` in deliveries/engine/sequencing.py) fails each test but the one
on values; deleting the parking or the release fails theirs.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from collections.abc import Callable

import pytest
from django.utils import timezone

from accounts.models import Merchant
from deliveries import emit
from deliveries.engine.claiming import Load, claim
from deliveries.engine.creating import retry_now
from deliveries.engine.recording import record
from deliveries.engine.sequencing import release_orphans
from deliveries.models import Delivery
from deliveries.results import AttemptResult
from endpoints.models import Endpoint
from tests.conftest import Answer, Received, Receiver
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def arrived(receiver: Receiver) -> list[dict[str, object]]:
    """The data of each event the receiver got, in the order the requests arrived."""
    with receiver.lock:
        return [r.json()["data"] for r in receiver.requests]


def by_code(receiver: Receiver) -> dict[object, list[object]]:
    order: dict[object, list[object]] = defaultdict(list)
    for data in arrived(receiver):
        order[data.get("code")].append(data["n"])
    return order


def test_it_delivers_each_value_in_emission_order_while_its_first_is_retried(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    make_endpoint(
        receiver.url("/products"),
        ordering_key="code",
        max_in_flight=20,
        retry_policy="fixed",
        fixed_retries=3,
        fixed_cooldown_seconds=1,
    )
    failed_once: list[int] = []

    def fail_the_first_once(request: Received) -> Answer | None:
        if request.json()["data"]["n"] == 0 and not failed_once:
            failed_once.append(0)
            return Answer(500)
        return None

    receiver.by_request = fail_the_first_once
    emitted: dict[str, list[int]] = defaultdict(list)
    for n in range(30):
        code = "SKU-A" if n % 3 == 0 else ("SKU-B" if n % 3 == 1 else "SKU-C")
        emit(merchant, "receipts.update", {"code": code, "n": n})
        emitted[code].append(n)
    start_worker()
    start_worker()
    wait_until(lambda: len(arrived(receiver)) == 31, 60, "every event, and one retry")
    order = by_code(receiver)
    assert order["SKU-A"] == [0, *emitted["SKU-A"]]  # its first twice, then the rest in order
    assert order["SKU-B"] == emitted["SKU-B"]
    assert order["SKU-C"] == emitted["SKU-C"]
    # While SKU-A's first waited for its retry, only SKU-A was held back.
    sent = [data["n"] for data in arrived(receiver)]
    meanwhile = sent[sent.index(0) + 1 : sent.index(0, sent.index(0) + 1)]
    assert not set(meanwhile) & set(emitted["SKU-A"])
    assert set(meanwhile) & set(emitted["SKU-B"]) and set(meanwhile) & set(emitted["SKU-C"])


def test_it_holds_back_only_the_failing_value_until_it_fails_for_good(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    make_endpoint(
        receiver.url("/invoices"),
        ordering_key="invoice.number",
        retry_policy="fixed",
        fixed_retries=1,
        fixed_cooldown_seconds=1,
    )
    receiver.by_request = lambda r: Answer(500) if r.json()["data"]["n"] == 0 else None
    emit(merchant, "receipts.update", {"invoice": {"number": 7}, "n": 0})
    emit(merchant, "receipts.update", {"invoice": {"number": 7}, "n": 1})
    emit(merchant, "receipts.update", {"invoice": {"number": 8}, "n": 2})
    emit(merchant, "receipts.update", {"note": "no invoice: not ordered", "n": 3})
    waiting = Delivery.objects.get(event__data__n=1)
    start_worker()
    wait_until(lambda: {2, 3} <= {d["n"] for d in arrived(receiver)}, 30, "the others sent")
    # Invoice 7's second waits for its first (failed once, retried in a second).
    assert 1 not in [d["n"] for d in arrived(receiver)]
    assert waiting.waiting_for() == Delivery.objects.get(event__data__n=0)
    wait_until(lambda: len(arrived(receiver)) == 5, 30, "invoice 7's second, after the first")
    assert [d["n"] for d in arrived(receiver)][-1] == 1
    wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 3, 10, "recorded")
    assert Delivery.objects.get(event__data__n=0).status == "failed"


def _ordered(merchant: Merchant, endpoint: Endpoint, count: int) -> list[Delivery]:
    for n in range(count):
        emit(merchant, "receipts.update", {"code": "SKU-1", "n": n})
    return list(Delivery.objects.filter(endpoint=endpoint).order_by("id"))


def test_it_sends_one_delivery_of_a_value_at_a_time(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/p", ordering_key="code", max_in_flight=50)
    first, *_ = _ordered(merchant, endpoint, 3)
    emit(merchant, "receipts.update", {"n": 99})  # no code: not ordered
    taken = claim("worker-a", 50, Load(capacity=50))
    assert sorted(d.event.data["n"] for d in taken) == [0, 99]
    assert claim("worker-b", 50, Load(capacity=50)) == []  # SKU-1's first is in flight
    assert Delivery.objects.get(pk=first.pk).status == "delivering"


def test_it_puts_a_manually_retried_delivery_behind_newer_ones_of_its_value(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/p", ordering_key="code")
    old, second, third = _ordered(merchant, endpoint, 3)
    Delivery.objects.filter(pk=old.pk).update(status="failed", attempts=5)
    assert retry_now(Delivery.objects.filter(pk=old.pk)) == 1
    taken = claim("worker-a", 10, Load(capacity=10))
    assert [d.pk for d in taken] == [second.pk]  # not the retried one: it goes after third
    old.refresh_from_db()
    assert old.waiting_for() == third


def test_it_keeps_a_retried_deliverys_place_when_the_merchant_asks(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/p", ordering_key="code")
    old, second, _ = _ordered(merchant, endpoint, 3)
    Delivery.objects.filter(pk=old.pk).update(status="failed", attempts=5)
    assert retry_now(Delivery.objects.filter(pk=old.pk), keep_place=True) == 1
    taken = claim("worker-a", 10, Load(capacity=10))
    assert [d.pk for d in taken] == [old.pk]
    second.refresh_from_db()
    assert second.waiting_for() == old


def test_it_orders_by_the_value_not_its_text(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/p", ordering_key="code")
    emit(merchant, "receipts.update", {"code": 7, "n": 0})
    emit(merchant, "receipts.update", {"code": "7", "n": 1})  # a string: another value
    values = list(
        Delivery.objects.filter(endpoint=endpoint).order_by("id").values_list("ordering_value")
    )
    assert values == [("7",), ('"7"',)]
    assert len(claim("worker-a", 10, Load(capacity=10))) == 2


def test_it_parks_a_backlog_behind_a_delivery_and_makes_the_next_due_when_it_finishes(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/p", ordering_key="code", max_in_flight=50)
    first, second, *rest = _ordered(merchant, endpoint, 5)
    (taken,) = claim("worker-a", 50, Load(capacity=50))
    assert taken.pk == first.pk
    assert claim("worker-a", 50, Load(capacity=50)) == []
    # Held back: parked (no due time), so claims no longer walk them.
    parked = Delivery.objects.filter(endpoint=endpoint, status="pending")
    assert [d.next_attempt_at for d in parked] == [None] * 4
    record("worker-a", [AttemptResult(taken, b"{}", {}, status=200, answered=True)])
    second.refresh_from_db()
    assert second.next_attempt_at is not None  # the next of its value is due now
    assert [d.pk for d in claim("worker-a", 50, Load(capacity=50))] == [second.pk]
    assert all(
        d.next_attempt_at is None for d in Delivery.objects.filter(pk__in=[d.pk for d in rest])
    )


def test_it_makes_due_a_parked_delivery_nothing_holds_back_any_more(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/p", ordering_key="code", max_in_flight=50)
    first, second, _ = _ordered(merchant, endpoint, 3)
    claim("worker-a", 50, Load(capacity=50))
    claim("worker-a", 50, Load(capacity=50))  # parks the other two
    # Its outcome written by other means than the recorder (which would release the next).
    Delivery.objects.filter(pk=first.pk).update(status="succeeded", claimed_by="")
    assert release_orphans(timezone.now()) == 1
    second.refresh_from_db()
    assert second.next_attempt_at is not None
