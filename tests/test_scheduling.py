"""Who is served next: fairness by what is in flight, the slow lane, adaptive concurrency.

Each test fails when its mechanism is removed from `deliveries/engine/claiming.py`,
`breaker.py` or `pumping.py` (checked by deleting it once): the in-flight ordering, the
fresh/old alternation, the slow lane's bound, the adaptive limit in claims and its halving and
growth, and a pump whose sending loop is late claiming only for newly active merchants.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Merchant
from deliveries.engine.breaker import update as update_breakers
from deliveries.engine.claiming import Discovery, Load, claim
from deliveries.engine.finding import discover
from deliveries.engine.queueing import kick, take_fresh
from deliveries.models import Delivery, Event
from deliveries.results import AttemptResult
from endpoints.models import Endpoint

pytestmark = pytest.mark.django_db(transaction=True)


def _due(endpoint: Endpoint, count: int = 1, *, ago: float = 60, status: str = "pending") -> None:
    """`count` deliveries to an endpoint, due `ago` seconds ago (or in flight elsewhere)."""
    event = Event.objects.create_event(endpoint.merchant, "receipts.update", {"n": count})
    at = timezone.now() - timedelta(seconds=ago)
    made = Delivery.objects.bulk_create(
        Delivery(
            merchant=endpoint.merchant,
            event=event,
            endpoint=endpoint,
            next_attempt_at=at,
            created_at=at,
        )
        for n in range(count)
    )
    if status == Delivery.Status.DELIVERING:
        Delivery.objects.filter(pk__in=[d.pk for d in made]).update(
            status=status,
            claimed_by="another-worker",
            claimed_until=timezone.now() + timedelta(minutes=1),
        )


def _merchants(count: int) -> list[Merchant]:
    return [Merchant.objects.create(name=f"Shop {n}") for n in range(count)]


def test_it_serves_the_merchant_with_nothing_in_flight_before_an_older_busy_one(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    busy_shop, idle_shop = _merchants(2)
    busy = make_endpoint("http://127.0.0.1:9/busy", merchant=busy_shop, max_in_flight=50)
    idle = make_endpoint("http://127.0.0.1:9/idle", merchant=idle_shop)
    _due(busy, 5, status=Delivery.Status.DELIVERING)  # another worker has 5 in flight
    _due(busy, 5, ago=600)  # and its backlog waited longest
    _due(idle, 1, ago=1)

    claimed = claim("w1", 1, Load(capacity=100))

    assert [d.merchant_id for d in claimed] == [idle_shop.pk]


def test_it_evens_out_what_merchants_have_in_flight(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    shops = _merchants(3)
    endpoints = [
        make_endpoint(f"http://127.0.0.1:9/{n}", merchant=shop, max_in_flight=50)
        for n, shop in enumerate(shops)
    ]
    _due(endpoints[0], 4, status=Delivery.Status.DELIVERING)
    _due(endpoints[1], 2, status=Delivery.Status.DELIVERING)
    for endpoint in endpoints:
        _due(endpoint, 10)

    claimed = claim("w1", 6, Load(capacity=100))

    given = [sum(d.merchant_id == shop.pk for d in claimed) for shop in shops]
    # Water-filling from 4 / 2 / 0 in flight with 6 slots: everyone ends at 4.
    assert given == [0, 2, 4]


def test_it_serves_a_fresh_event_before_the_whole_backlog_of_a_crowd(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    crowd = _merchants(40)
    for n, shop in enumerate(crowd):
        _due(make_endpoint(f"http://127.0.0.1:9/crowd{n}", merchant=shop), 1, ago=300 - n)
    newcomer = Merchant.objects.create(name="Newcomer")
    _due(make_endpoint("http://127.0.0.1:9/new", merchant=newcomer), 1, ago=0.5)

    claimed = claim("w1", 4, Load(capacity=100))

    merchants = [d.merchant_id for d in claimed]
    assert newcomer.pk in merchants  # not behind 40 older deliveries
    assert crowd[0].pk in merchants  # and the oldest of the backlog still goes first


def test_it_keeps_a_merchant_posting_steadily_level_with_a_crowd(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    crowd = _merchants(30)
    for n, shop in enumerate(crowd):
        _due(make_endpoint(f"http://127.0.0.1:9/crowd{n}", merchant=shop), 1, ago=300 - n)
    steady = Merchant.objects.create(name="Steady")
    endpoint = make_endpoint("http://127.0.0.1:9/steady", merchant=steady)
    _due(endpoint, 1, status=Delivery.Status.DELIVERING)  # its last event, not yet recorded
    _due(endpoint, 1, ago=0.5)

    claimed = claim("w1", 4, Load(capacity=100))

    # One send in flight is as good as none: it is not served after the 30 with none.
    assert steady.pk in [d.merchant_id for d in claimed]


def test_it_looks_at_an_endpoint_told_fresh_before_the_next_scan(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    old_shop, new_shop = _merchants(2)
    backlog = make_endpoint("http://127.0.0.1:9/backlog", merchant=old_shop, max_in_flight=50)
    _due(backlog, 10)
    discovery = Discovery()
    discovery.reuse = 60.0  # this worker's scan stays in use for a minute
    assert len(claim("w1", 1, Load(capacity=100), discovery=discovery)) == 1
    fresh = make_endpoint("http://127.0.0.1:9/fresh", merchant=new_shop)
    _due(fresh, 1, ago=0.1)  # after the scan
    discovery.fresh.add(fresh.pk)  # what an emit tells the pumps (deliveries.engine.queueing)

    claimed = claim("w1", 2, Load(capacity=100), discovery=discovery)

    assert new_shop.pk in [d.merchant_id for d in claimed]


def test_it_orders_equals_differently_in_two_workers_scans(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    for n, shop in enumerate(_merchants(60)):
        _due(make_endpoint(f"http://127.0.0.1:9/{n}", merchant=shop), 1, ago=5)
    first, second = Discovery(), Discovery()
    now = timezone.now()
    discover(now, 10, Load(capacity=100), first)
    discover(now, 10, Load(capacity=100), second)  # both scanned the same crowd

    assert len(claim("w1", 10, Load(capacity=100), discovery=first)) == 10
    # The other worker does not reach for the same ten first (then it found none left).
    assert claim("w2", 10, Load(capacity=100), discovery=second)


def test_it_bounds_the_slow_lane_and_keeps_room_for_healthy_endpoints(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    slow_shop, healthy_shop = _merchants(2)
    slow = [
        make_endpoint(f"http://127.0.0.1:9/slow{n}", merchant=slow_shop, max_in_flight=20)
        for n in range(3)
    ]
    healthy = make_endpoint("http://127.0.0.1:9/ok", merchant=healthy_shop, max_in_flight=20)
    for endpoint in [*slow, healthy]:
        _due(endpoint, 20)
    # 10 slots, a slow lane of half of them, 3 already in flight to slow endpoints.
    load = Load(capacity=10, slow={e.pk for e in slow}, slow_in_flight=3)

    claimed = claim("w1", 7, load)

    to_slow = sum(d.endpoint_id != healthy.pk for d in claimed)
    assert to_slow == 2  # the lane's 5 less the 3 in flight
    assert len(claimed) == 7  # the rest went to the healthy endpoint


def test_it_claims_no_more_than_an_endpoints_adaptive_limit(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/cut", max_in_flight=10)
    Endpoint.objects.filter(pk=endpoint.pk).update(concurrency_limit=2)
    _due(endpoint, 10)

    claimed = claim("w1", 10, Load(capacity=100))

    assert len(claimed) == 2


def _results(endpoint: Endpoint, *, answered: bool, count: int = 1) -> list[AttemptResult]:
    delivery = Delivery(endpoint=endpoint, merchant=endpoint.merchant)
    return [
        AttemptResult(
            delivery=delivery,
            request_body=b"",
            request_headers={},
            status=200 if answered else 408,
            answered=answered,
        )
        for _ in range(count)
    ]


def test_it_halves_an_endpoints_concurrency_on_timeouts_and_grows_it_back_on_answers(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    endpoint = make_endpoint("http://127.0.0.1:9/aimd", max_in_flight=10)
    seen = []
    for _ in range(4):  # four batches with timeouts: 10 -> 5 -> 2 -> 1 -> 1
        update_breakers(_results(endpoint, answered=False, count=3), timezone.now())
        endpoint.refresh_from_db()
        seen.append(endpoint.allowed_in_flight)
    for _ in range(9):  # answers: one more per batch, back to the maximum
        update_breakers(_results(endpoint, answered=True), timezone.now())
        endpoint.refresh_from_db()
        seen.append(endpoint.allowed_in_flight)

    assert seen == [5, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert endpoint.concurrency_limit is None  # at its maximum again: nothing stored


def test_it_still_claims_an_endpoints_due_work_beside_a_row_with_no_due_time(
    make_endpoint: Callable[..., Endpoint],
) -> None:
    # A Send test row commits with no due time and is claimed by its own request; if that
    # request died, the row must not hide the endpoint's other work (SQLite sorts NULL first).
    endpoint = make_endpoint("http://127.0.0.1:9/test")
    _due(endpoint, 1)
    event = Event.objects.create_event(endpoint.merchant, "receipts.update", {"test": True})
    orphan = Delivery.objects.create(
        merchant=endpoint.merchant, event=event, endpoint=endpoint, next_attempt_at=None
    )

    claimed = claim("w1", 5, Load(capacity=100))

    assert len(claimed) == 1
    assert claimed[0].pk != orphan.pk


def test_it_tells_one_pump_which_endpoints_just_got_work(redis_conn: object) -> None:
    kick(fresh={7, 8})
    kick(fresh={8, 9})
    assert take_fresh(500) == {7, 8, 9}
    assert take_fresh(500) == set()  # each taken once: by one pump


def test_it_claims_for_endpoints_just_told_of_before_the_rest(
    redis_conn: object,
    make_endpoint: Callable[..., Endpoint],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deliveries.engine.pumping import Pump
    from deliveries.engine.senders import Senders

    old_shop, new_shop = _merchants(2)
    backlog = make_endpoint("http://127.0.0.1:9/backlog", merchant=old_shop, max_in_flight=100)
    _due(backlog, 50)
    pump = Pump(capacity=100)
    pump.discovery.reuse = 60.0
    started: list[list[int]] = []  # the merchants of each batch the pump starts sending
    monkeypatch.setattr(
        Senders, "start", lambda self, ds: started.append([d.merchant_id for d in ds])
    )
    pump.claim(1)  # the scan, in use from now on
    fresh = make_endpoint("http://127.0.0.1:9/fresh", merchant=new_shop)
    _due(fresh, 1, ago=0.1)
    kick(fresh={fresh.pk})  # what an emit tells the pumps
    started.clear()

    pump.claim(40)

    # Its delivery is loaded and started on its own, not after the other 39.
    assert started[0] == [new_shop.pk]
    assert sum(len(batch) for batch in started) == 40


def test_it_claims_only_for_newly_active_merchants_while_its_sending_loop_is_late(
    redis_conn: object,
    make_endpoint: Callable[..., Endpoint],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading
    import time

    from deliveries.engine import pumping
    from deliveries.engine.pumping import BUSY_LAG, Pump

    # Claims of 10, so that a crowd of 40 is more than two claims' worth.
    monkeypatch.setattr(pumping, "MAX_CLAIM", 10)
    crowd = _merchants(40)
    for n, shop in enumerate(crowd):
        _due(make_endpoint(f"http://127.0.0.1:9/crowd{n}", merchant=shop), 1, ago=60 - n)
    pump = Pump(capacity=1000)
    # The sending loop falls behind, as one does with more fast answers than it can turn
    # around: here a callback that holds it.
    gate = threading.Event()
    pump.senders.loop.call_soon_threadsafe(gate.wait, 30)

    class Stop:
        requested = False

    serving = threading.Thread(target=pump.serve, args=(Stop, time.monotonic() + 30))
    crowd_claimed = Delivery.objects.filter(merchant__in=crowd, status=Delivery.Status.DELIVERING)
    try:
        serving.start()
        deadline = time.monotonic() + 10
        while pump.senders.lag() <= BUSY_LAG and time.monotonic() < deadline:
            time.sleep(0.01)
        newcomer = _merchants(1)[0]
        fresh = make_endpoint("http://127.0.0.1:9/newcomer", merchant=newcomer)
        _due(fresh, 1, ago=0)
        kick(fresh={fresh.pk})  # what its emit tells the pumps
        newcomer_claimed = Delivery.objects.filter(
            merchant=newcomer, status=Delivery.Status.DELIVERING
        )
        while not newcomer_claimed.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # a pump that did not hold back would claim the rest by now

        # The newly active merchant is claimed at once; the crowd waits for the loop, past
        # the claim's worth a late loop may still take (more would only wait there too).
        assert newcomer_claimed.exists()
        assert crowd_claimed.count() <= 20
        gate.set()
        while Delivery.objects.filter(merchant__in=crowd, attempts=0).exists():
            assert time.monotonic() < deadline + 20, "the crowd was never claimed"
            time.sleep(0.05)
    finally:
        gate.set()
        Stop.requested = True
        serving.join(30)
        pump.senders.drain(30)
