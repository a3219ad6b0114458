"""Capacity no receiver can exhaust: the scenarios of a platform with many merchants.

On PostgreSQL, with two workers of the stock command (`python manage.py rqworker
--with-scheduler`), each timed for a healthy merchant posting 2 events a second through the
API (gunicorn), from the API's answer to the receiver:

* outage: 100 merchants' receivers hang (10 events waiting each, one more every 10 s); then
  the outage ends and everything must arrive, nothing lost;
* slow_peers: 2 merchants with 8 endpoints each answering after 20 s;
* crowd: 1,000 and 10,000 merchants with one due delivery each (answers after 200 ms): the
  newcomer's latency, and the crowd's drain rate (from the workers' start to the last
  arrival) at 10,000 against 1,000;
* database_restart: PostgreSQL stops while 100 sends are in flight and starts again once
  their answers are back: when every outcome is written, and how many were sent twice;
* rate_limit: a webhook limited to 20 deliveries a second with a backlog of 200: the most
  its receiver got in any one second, and the rate the backlog drained at.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
import time
import urllib.request
from datetime import timedelta
from typing import Any

from bench.harness import (
    Receiver,
    Workers,
    clean_tables,
    gunicorn,
    merchant_with_endpoints,
    payload,
    percentile,
    wait_for,
)

STOCK = "rqworker"  # python manage.py rqworker --with-scheduler
RATE = 20  # the rate_limit scenario's limit, deliveries per second


def on_postgres(name: str, receiver: Receiver, quick: bool) -> dict[str, Any]:
    from django.db import connection

    if connection.vendor != "postgresql" and name != "claim_cost":
        raise RuntimeError(f"{name} runs on PostgreSQL: bench.run --database postgres")
    scenarios = {
        "outage": lambda: outage(receiver, 30 if quick else 100, 20 if quick else 60),
        "slow_peers": lambda: slow_peers(receiver, 20 if quick else 60),
        "crowd": lambda: crowd(receiver, [300, 3000] if quick else [1000, 10_000]),
        "database_restart": lambda: database_restart(receiver, 100),
        "rate_limit": lambda: rate_limit(receiver, RATE, 200),
        "claim_cost": lambda: claim_cost([1000, 10_000] if quick else [1000, 10_000, 50_000]),
    }
    return scenarios[name]()


class Healthy:
    """A merchant posting 2 events a second through the API; its latencies, on demand."""

    def __init__(self, receiver: Receiver, path: str) -> None:
        from accounts.models import ApiKey

        self.receiver, self.path = receiver, path
        self.merchant = merchant_with_endpoints([receiver.url(path)])
        self.merchant.name = "Healthy"
        self.merchant.save(update_fields=["name"])
        self.key = ApiKey.issue(self.merchant, "bench")[1]
        self.answered: dict[str, float] = {}
        self.rejected = 0

    def post_for(self, port: int, seconds: float) -> None:
        import urllib3

        http = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False)
        headers = {"authorization": f"Bearer {self.key}", "content-type": "application/json"}
        started = time.monotonic()
        for n in range(int(seconds * 2)):
            time.sleep(max(0.0, started + n * 0.5 - time.monotonic()))
            body = json.dumps({"type": "inventory_levels.update", "data": payload(n)})
            response = http.urlopen("POST", "/api/v1/events", body=body, headers=headers)
            if response.status != 202:  # only accepted events count as emitted
                self.rejected += 1
                continue
            self.answered[json.loads(response.data)["event"]["id"]] = time.time()

    def figures(self, wait: float = 60) -> dict[str, Any]:
        def seen() -> dict[str, float]:
            times = self.receiver.stats(times=True)["times"]
            return {w: t for p, w, t in times if p == self.path}

        deadline = time.monotonic() + wait
        while len(seen()) < len(self.answered) and time.monotonic() < deadline:
            time.sleep(0.2)
        arrived = seen()
        lat = [(arrived[w] - at) * 1000 for w, at in self.answered.items() if w in arrived]
        return {
            "healthy_events": len(self.answered),
            "healthy_rejected": self.rejected,
            "healthy_lost": len(self.answered) - len(lat),
            "healthy_p50_ms": round(percentile(lat, 50), 1) if lat else None,
            "healthy_p99_ms": round(percentile(lat, 99), 1) if lat else None,
            "healthy_max_ms": round(max(lat), 1) if lat else None,
        }


def _merchants(count: int, prefix: str, url: Any) -> list[Any]:
    """`count` merchants with one endpoint each (all event types) at url(n)."""
    from accounts.models import Merchant
    from endpoints.models import Endpoint

    shops = Merchant.objects.bulk_create(Merchant(name=f"{prefix} {n}") for n in range(count))
    Endpoint.objects.bulk_create(
        Endpoint(merchant=shop, url=url(n)) for n, shop in enumerate(shops)
    )
    return shops


def _due_now(shops: list[Any], per_shop: int, ago: float = 1.0) -> int:
    """`per_shop` due deliveries for each shop, spread over its endpoints, stored in bulk (a
    backlog), with the shops' sequence counters moved past them."""
    from django.db.models import F
    from django.utils import timezone

    from accounts.models import Merchant
    from catalogue.models import EventType
    from deliveries.engine.queueing import kick
    from deliveries.models import Delivery, Event
    from endpoints.models import Endpoint

    event_type = EventType.objects.get(name="inventory_levels.update")
    endpoints: dict[int, list[Any]] = {}
    for endpoint in Endpoint.objects.filter(merchant__in=shops).order_by("pk"):
        endpoints.setdefault(endpoint.merchant_id, []).append(endpoint)
    due = timezone.now() - timedelta(seconds=ago)
    made = 0
    for start in range(0, len(shops), 2000):
        part = shops[start : start + 2000]
        events = Event.objects.bulk_create(
            Event(merchant=shop, event_type=event_type, data=payload(n), sequence=n + 1)
            for shop in part
            for n in range(per_shop)
        )
        Delivery.objects.bulk_create(
            Delivery(
                merchant_id=ev.merchant_id,
                event=ev,
                endpoint=(own := endpoints[ev.merchant_id])[ev.sequence % len(own)],
                next_attempt_at=due,
                created_at=due,
            )
            for ev in events
        )
        made += len(events)
    Merchant.objects.filter(pk__in=[s.pk for s in shops]).update(
        event_sequence=F("event_sequence") + per_shop
    )
    kick(force=True)
    return made


def _run_with_healthy(
    receiver: Receiver, healthy: Healthy, seconds: float, during: Any = None
) -> dict[str, Any]:
    server, port = gunicorn()
    pool = Workers(2, STOCK)
    try:
        if during is not None:
            threading.Thread(target=during, daemon=True).start()
        time.sleep(3)  # the hostile work reaches the workers first
        healthy.post_for(port, seconds)
        figures = healthy.figures()
    finally:
        pool.stop()
        server.terminate()
        server.wait()
    return figures


def outage(receiver: Receiver, merchants: int, seconds: float) -> dict[str, Any]:
    from deliveries import emit
    from deliveries.models import Delivery

    clean_tables()
    receiver.reset()
    shops = _merchants(merchants, "Hosted", lambda n: receiver.url(f"/hang/{n}"))
    emitted = _due_now(shops, 10)
    stop = threading.Event()
    more = [0]

    def one_more_every_10_s() -> None:
        while not stop.wait(10):
            for shop in shops:
                emit(shop, "inventory_levels.update", {"more": True})
                more[0] += 1

    healthy = Healthy(receiver, "/ok/healthy")
    figures = _run_with_healthy(receiver, healthy, seconds, one_more_every_10_s)
    stop.set()
    # The outage ends: everything the hosted merchants were sent must arrive, once.
    urllib.request.urlopen(urllib.request.Request(receiver.url("/_heal"), method="POST")).read()
    pool = Workers(2, STOCK)
    ended = time.monotonic()
    total = emitted + more[0]
    try:
        wait_for(
            lambda: (
                Delivery.objects.filter(status="succeeded", merchant__in=shops).count() >= total
            ),
            900,
            "the outage's backlog",
        )
        drained = time.monotonic() - ended
    except RuntimeError:
        drained = None
    finally:
        pool.stop()
    delivered = Delivery.objects.filter(status="succeeded", merchant__in=shops).count()
    return {
        "database": "postgresql",
        "workers": "2 x rqworker --with-scheduler",
        "hanging_merchants": merchants,
        "hanging_deliveries": total,
        **figures,
        "after_outage_delivered": delivered,
        "after_outage_lost": total - delivered,
        "after_outage_drain_seconds": None if drained is None else round(drained, 1),
        "sent_twice_while_in_flight": receiver.stats()["overlaps"],
    }


def slow_peers(receiver: Receiver, seconds: float) -> dict[str, Any]:
    clean_tables()
    receiver.reset()
    peers = _merchants(16, "Slow", lambda n: receiver.url(f"/wait/20000/{n}"))
    from endpoints.models import Endpoint

    # Two merchants with 8 endpoints each, every endpoint with more than its cap waiting.
    for n, shop in enumerate(peers):
        Endpoint.objects.filter(merchant=shop).update(merchant=peers[n % 2])
    _due_now(peers[:2], 8 * 30)
    healthy = Healthy(receiver, "/ok/third")
    figures = _run_with_healthy(receiver, healthy, seconds)
    return {
        "database": "postgresql",
        "workers": "2 x rqworker --with-scheduler",
        "slow_merchants": 2,
        "slow_endpoints": 16,
        "slow_answer_seconds": 20,
        "slow_most_in_flight": receiver.stats()["max_in_flight_by_kind"].get("wait", 0),
        **figures,
    }


def crowd(receiver: Receiver, sizes: list[int]) -> dict[str, Any]:
    """The newcomer's latency and the crowd's drain rate, for each crowd size."""
    from deliveries.models import Delivery

    results: dict[str, Any] = {"database": "postgresql", "workers": "2 x rqworker"}
    for size in sizes:
        clean_tables()
        receiver.reset()
        shops = _merchants(size, "Crowd", lambda n: receiver.url(f"/slow/{n}"))
        made = _due_now(shops, 1)
        healthy = Healthy(receiver, "/ok/newcomer")
        server, port = gunicorn()
        pool = Workers(2, STOCK)
        started = time.time()  # both workers registered: the crowd's drain starts
        try:
            seconds = 0.0
            waiting = Delivery.objects.filter(status="pending", merchant__in=shops)
            while waiting.exists() or seconds < 10:
                healthy.post_for(port, 5)
                seconds += 5
                if seconds > 600:
                    break
            wait_for(
                lambda made=made, shops=shops: (
                    Delivery.objects.filter(status="succeeded", merchant__in=shops).count() >= made
                ),
                600,
                "the crowd",
            )
            arrived = [
                t for p, _, t in receiver.stats(times=True)["times"] if p.startswith("/slow/")
            ]
            # From the workers' start to the last arrival, as the scaling runs measure: from
            # the first arrival, a crowd that fits in flight at once (1,000 merchants, 2,000
            # slots) "drained" at 13,870 a second, the spread of one burst.
            drain = len(arrived) / max(0.001, max(arrived) - started)
            figures = healthy.figures()
        finally:
            pool.stop()
            server.terminate()
            server.wait()
        results[f"crowd_{size}"] = {
            "merchants": size,
            "drain_per_second": round(drain, 1),
            **figures,
        }
    first, last_size = results[f"crowd_{sizes[0]}"], results[f"crowd_{sizes[-1]}"]
    results["newcomer_p99_ms"] = max(
        r["healthy_p99_ms"] or 0 for k, r in results.items() if k.startswith("crowd_")
    )
    results["drain_ratio_largest_to_smallest"] = round(
        last_size["drain_per_second"] / first["drain_per_second"], 2
    )
    return results


def _postgres_data() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        return cursor.fetchone()[0]


def _pg_ctl(data: str, *args: str) -> None:
    from pathlib import Path

    from webhooks_project import embedded_postgres

    pg_ctl = str(embedded_postgres.bindir() / "pg_ctl")
    log = str(Path(data).parent / "log")
    extra: list[str] = []
    if args[-1] == "start":
        options = shlex.split((Path(data) / "postmaster.opts").read_text())[3:]
        extra = ["-o", shlex.join(options)]
    embedded_postgres.run_as_owner(
        [pg_ctl, "-D", data, "-m", "fast", "-l", log, "-w", *extra, *args],
        stdout=subprocess.DEVNULL,
    )


def database_restart(receiver: Receiver, sends: int) -> dict[str, Any]:
    from django.db import connection

    from deliveries.models import Delivery

    clean_tables()
    receiver.reset()
    merchant = merchant_with_endpoints(
        [receiver.url(f"/wait/3000/{n}") for n in range(10)], max_in_flight=sends // 10
    )
    from deliveries import emit

    for n in range(sends // 10):
        emit(merchant, "inventory_levels.update", payload(n))
    data = _postgres_data()
    pool = Workers(2, STOCK, {"WEBHOOK_LEASE_MARGIN_SECONDS": "10"})
    try:
        wait_for(lambda: _active(receiver) >= sends, 60, "the sends in flight")
        connection.close()
        _pg_ctl(data, "stop")
        stopped = time.monotonic()
        try:
            wait_for(lambda: _active(receiver) == 0, 30, "the answers")
            time.sleep(1)
        finally:
            _pg_ctl(data, "start")
        back = time.monotonic()

        def written() -> bool:
            try:
                return Delivery.objects.filter(status="succeeded").count() >= sends
            except Exception:
                connection.close()
                return False

        wait_for(written, 120, "every outcome written")
        all_written = time.monotonic() - back
        time.sleep(45)  # past the lease (30 s + 10 s): a lost outcome is sent again by now
        stats = receiver.stats()
    finally:
        pool.stop()
    return {
        "database": "postgresql",
        "workers": "2 x rqworker --with-scheduler",
        "in_flight_at_stop": sends,
        "down_seconds": round(back - stopped, 1),
        "all_written_seconds_after_restart": round(all_written, 1),
        "sent_twice": stats["duplicates"],
    }


def _active(receiver: Receiver) -> int:
    """Requests to /wait/ open at the receiver (an earlier scenario's /dead/ ones stay open for
    an hour: counting them, a full `make bench` timed out waiting for the answers here)."""
    return int(receiver.stats()["active_by_kind"].get("wait", 0))


class _RowsRead:
    """Statements run and rows they returned or changed (a database connection's wrapper;
    SQLite's cursor does not count the rows a SELECT returns, so there only statements)."""

    def __init__(self) -> None:
        self.statements = 0
        self.rows = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        self.statements += 1
        self.rows += max(0, context["cursor"].rowcount)
        return result


def claim_cost(sizes: list[int]) -> dict[str, Any]:
    """One process's claims of 100 slots with N endpoints that have due work (2 each): the
    first claim of a worker (it scans every endpoint with due work) and the claims after it
    (they reuse the scan, as a worker's claims do for a moment): milliseconds, statements
    and rows read per claim."""
    from django.db import connection

    from deliveries.engine.claiming import Discovery, Load, claim
    from lib.ids import new_id

    results: dict[str, Any] = {}
    for size in sizes:
        clean_tables()
        shops = _merchants(size, "Claim", lambda n: f"http://127.0.0.1:9/{n}")
        _due_now(shops, 2)
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        discovery = Discovery()
        discovery.reuse = 3600.0  # every claim after the first reuses its scan
        figures = []
        for _ in range(6):
            counter = _RowsRead()
            with connection.execute_wrapper(counter):
                started = time.perf_counter()
                claimed = claim(new_id("bench"), 100, Load(capacity=1000), discovery=discovery)
                took = (time.perf_counter() - started) * 1000
            assert len(claimed) == 100, f"claimed {len(claimed)} of 100"
            figures.append((took, counter.statements, counter.rows))
        first, later = figures[0], sorted(figures[1:])[2]
        results[f"endpoints_{size}"] = {
            "first_claim_ms": round(first[0], 1),
            "first_claim_rows_read": first[2],
            "claim_ms": round(later[0], 1),
            "claim_statements": later[1],
            "claim_rows_read": later[2],
        }
        if connection.vendor == "sqlite":
            for key in ("first_claim_rows_read", "claim_rows_read"):
                del results[f"endpoints_{size}"][key]
    return results


def rate_limit(receiver: Receiver, rate: int, backlog: int) -> dict[str, Any]:
    """A backlog to one rate-limited webhook, sent by two workers: the receiver's busiest
    second (at most `rate`, +1 at a window's edge) and the drain rate (`rate`)."""
    from deliveries.models import Delivery
    from endpoints.models import Endpoint

    clean_tables()
    receiver.reset()
    shop = merchant_with_endpoints([receiver.url("/ok/limited")])
    Endpoint.objects.filter(merchant=shop).update(rate_limit=rate, max_in_flight=100)
    made = _due_now([shop], backlog)
    pool = Workers(2, STOCK)
    try:
        wait_for(
            lambda: Delivery.objects.filter(status="succeeded", merchant=shop).count() >= made,
            backlog / rate * 3 + 30,
            "the limited backlog",
        )
    finally:
        pool.stop()
    times = sorted(t for p, _, t in receiver.stats(times=True)["times"] if p == "/ok/limited")
    busiest, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    return {
        "database": "postgresql",
        "workers": "2 x rqworker",
        "rate_limit": rate,
        "backlog": backlog,
        "received": len(times),
        "busiest_second": busiest,
        "drain_per_second": round((len(times) - 1) / max(0.001, times[-1] - times[0]), 1),
    }
