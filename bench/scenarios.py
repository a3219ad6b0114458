"""The throughput and latency scenarios of `make bench` (see bench/run.py)."""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import (
    Receiver,
    Workers,
    all_succeeded,
    clean_tables,
    latencies_ms,
    merchant_with_endpoints,
    payload,
    percentile,
    succeeded,
    wait_for,
)

# --- scenarios ---------------------------------------------------------------------------


def _signed_request() -> tuple[bytes, dict[str, str]]:
    """The body and headers both limit loops send: a signed, 1 KiB inventory update."""
    from lib import signing

    body = json.dumps({"id": "evt_x", "data": payload(1)}).encode()
    headers = {"content-type": "application/json"}
    headers.update(signing.headers([b"k" * 32], "evt_x", int(time.time()), body))
    return body, headers


def _loop(send: Any, seconds: float) -> float:
    """Requests a second of `send()` in a loop on this thread, after 200 to warm up."""
    for _ in range(200):
        send()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        send()
        count += 1
    return count / (time.perf_counter() - started)


def _async_loop(url: str, body: bytes, headers: dict[str, str], seconds: float) -> float:
    """Requests a second of the worker's sending core (`lib.http.aio`), 100 in flight."""
    import asyncio

    from lib.http.aio import AsyncClient

    async def run() -> float:
        client = AsyncClient()
        count = 0
        try:
            await asyncio.gather(*[client.post(url, body, headers) for _ in range(200)])
            started = time.perf_counter()

            async def one_lane() -> None:
                nonlocal count
                while time.perf_counter() - started < seconds:
                    await client.post(url, body, headers, timeout=30)
                    count += 1

            await asyncio.gather(*[one_lane() for _ in range(100)])
            return count / (time.perf_counter() - started)
        finally:
            await client.close()

    return asyncio.run(run())


def limit(receiver: Receiver, seconds: float) -> dict[str, Any]:
    """Three clients to the fast receiver in one process, same body, back to back.

    `requests_per_second`: a plain requests.Session().post loop (the limit the targets are
    ratios to). `own_sender_per_second`: the synchronous client, `lib.http.post` (urllib3
    with the SSRF guard, deadline watchdog and capped reads), that Send test and loyalty calls
    use. `async_sender_100_in_flight_per_second`: the worker's sending core (`lib.http.aio`,
    aiohttp, the same guarantees) with 100 requests in flight, as a worker keeps them.
    """
    import requests

    from lib import http

    body, headers = _signed_request()
    session = requests.Session()
    url = receiver.url("/ok/limit")
    plain = _loop(lambda: session.post(url, data=body, headers=headers), seconds)
    own_url = receiver.url("/ok/own-sender")
    own = _loop(lambda: http.post(own_url, body, headers, timeout=30), seconds)
    worker_core = _async_loop(receiver.url("/ok/async-sender"), body, headers, seconds)
    return {
        "requests_per_second": round(plain),
        "own_sender_per_second": round(own),
        "async_sender_100_in_flight_per_second": round(worker_core),
        "body_bytes": len(body),
        "seconds": seconds,
    }


def fast(
    receiver: Receiver, workers: int, events: int, endpoints: int, limit_seconds: float
) -> dict[str, Any]:
    from deliveries import emit
    from deliveries.models import Delivery

    # The machine is shared and its speed drifts over minutes: the ratio compares with the
    # client's limit measured right before this run, side by side.
    beside = limit(receiver, limit_seconds)
    lim, own = beside["requests_per_second"], beside["own_sender_per_second"]
    clean_tables()
    receiver.reset()
    merchant = merchant_with_endpoints(
        [receiver.url(f"/ok/{n}") for n in range(endpoints)], log_mode="full"
    )
    total = events * endpoints
    t0 = time.monotonic()
    for n in range(events):
        emit(merchant, "inventory_levels.update", payload(n))
    emit_seconds = time.monotonic() - t0
    # Measured from the first request the workers send on the emitted backlog to the last
    # outcome written: the rate of sending, not of the emit loop or of process start-up.
    pool = Workers(workers)
    wait_for(lambda: all_succeeded(total), 600, "fast deliveries")
    last = Delivery.objects.order_by("-completed_at").values_list("completed_at", flat=True)[0]
    stats = receiver.stats()
    elapsed = last.timestamp() - stats["first_at"]
    rss = pool.rss_mb()
    pool.stop()
    rate = total / elapsed
    return {
        "workers": workers,
        "events": events,
        "endpoints": endpoints,
        "deliveries": total,
        "log_mode": "full",
        "seconds": round(elapsed, 2),
        "emit_seconds": round(emit_seconds, 2),
        "deliveries_per_second": round(rate),
        "limit_beside_requests_per_second": lim,
        "own_sender_beside_per_second": own,
        "ratio_to_limit": round(rate / lim, 2),
        "ratio_to_own_sender": round(rate / own, 2),
        "duplicates": stats["duplicates"],
        "worker_rss_mb": rss,
    }


def slow(receiver: Receiver, events: int, endpoints: int) -> dict[str, Any]:
    from deliveries import emit
    from deliveries.models import Delivery

    clean_tables()
    receiver.reset()
    merchant = merchant_with_endpoints(
        [receiver.url(f"/slow/{n}") for n in range(endpoints)], log_mode="full"
    )
    for n in range(events):
        emit(merchant, "inventory_levels.update", payload(n))
    total = events * endpoints
    t0 = datetime.now(UTC)
    pool = Workers(1)
    wait_for(lambda: all_succeeded(total), 600, "slow deliveries")
    last = Delivery.objects.order_by("-completed_at").values_list("completed_at", flat=True)[0]
    pool.stop()
    elapsed = (last - t0).total_seconds()
    stats = receiver.stats()
    return {
        "workers": 1,
        "deliveries": total,
        "endpoints": endpoints,
        "receiver_delay_ms": 200,
        "seconds": round(elapsed, 2),
        "deliveries_per_second": round(total / elapsed),
        "max_in_flight": stats["max_in_flight"],
    }


HEALTHY_EVENT_GAP = 0.02  # seconds: 50 events (500 deliveries) a second, half of one worker


def isolation(receiver: Receiver, backlog: int, healthy_events: int) -> dict[str, Any]:
    from catalogue.models import EventType
    from deliveries import emit

    clean_tables()
    receiver.reset()
    dead = merchant_with_endpoints([receiver.url("/dead/0")], timeout_seconds=5)
    for n in range(backlog):
        emit(dead, "inventory_levels.update", payload(n))
    healthy = merchant_with_endpoints([receiver.url(f"/ok/{n}") for n in range(10)])
    assert EventType.objects.exists()
    pool = Workers(1)
    time.sleep(2)  # the dead endpoint's requests are in flight and its backlog is queued
    # A fixed pace, so the figure does not depend on how fast this process can emit.
    started = time.monotonic()
    for n in range(healthy_events):
        time.sleep(max(0.0, started + n * HEALTHY_EVENT_GAP - time.monotonic()))
        emit(healthy, "inventory_levels.update", payload(n))
    wait_for(lambda: receiver.stats()["unique"] >= healthy_events * 10, 300, "healthy deliveries")
    values = latencies_ms(receiver, "/ok/")
    from deliveries.models import Delivery

    pending_dead = Delivery.objects.filter(merchant=dead).exclude(status="succeeded").count()
    pool.stop()
    return {
        "dead_backlog": backlog,
        "dead_timeout_s": 5,
        "dead_backlog_still_pending": pending_dead,
        "healthy_deliveries": len(values),
        "healthy_deliveries_per_second_offered": round(10 / HEALTHY_EVENT_GAP),
        "healthy_p50_ms": round(percentile(values, 50), 1),
        "healthy_p99_ms": round(percentile(values, 99), 1),
    }


def at_rest(receiver: Receiver, events: int) -> dict[str, Any]:
    from deliveries import emit

    clean_tables()
    receiver.reset()
    merchant = merchant_with_endpoints([receiver.url("/ok/rest")])
    pool = Workers(1)
    time.sleep(1)
    for n in range(events):
        emit(merchant, "inventory_levels.update", payload(n))
        wait_for(lambda n=n: receiver.stats()["unique"] > n, 30, "one delivery")
        time.sleep(0.02)
    pool.stop()
    values = latencies_ms(receiver, "/ok/rest")
    return {
        "events": events,
        "p50_ms": round(percentile(values, 50), 1),
        "p99_ms": round(percentile(values, 99), 1),
    }


def dashboard(rows: int) -> dict[str, Any]:
    """Server time of the busiest pages with `rows` deliveries for one endpoint."""
    from django.db import connection, transaction
    from django.test import Client
    from django.utils import timezone

    from accounts.models import Merchant, User
    from catalogue.models import EventType
    from endpoints.models import Endpoint

    clean_tables()
    merchant = Merchant.objects.create(name="Big")
    endpoint = Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/big")
    event_type = EventType.objects.get(name="inventory_levels.update")
    endpoint.event_types.add(event_type)
    user = User.objects.create_user("bench", password="x", merchant=merchant)
    now = timezone.now()
    t0 = time.monotonic()
    if connection.vendor == "postgresql":
        _seed_postgres(merchant.pk, event_type.pk, endpoint.pk, rows, now)
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            _seed_executemany(cursor, merchant.pk, event_type.pk, endpoint.pk, rows, now)
    seed_seconds = time.monotonic() - t0
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as a long-running database would have
    client = Client()
    client.force_login(user)
    oldest = endpoint.deliveries.order_by("id").values_list("id", flat=True)[0]
    pages = {
        "webhook_detail": f"/webhooks/{endpoint.public_id}/",
        "webhook_detail_last_page": f"/webhooks/{endpoint.public_id}/?after={oldest - 1}",
        "events": "/events/",
    }
    figures: dict[str, Any] = {"rows": rows, "seed_seconds": round(seed_seconds, 1)}
    for name, path in pages.items():
        timings = []
        for _ in range(6):
            started = time.perf_counter()
            response = client.get(path)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        figures[f"{name}_ms"] = round(statistics.median(timings[1:]), 1)
    return figures


# Seeded rows are this many seconds apart, ending now (1,000,000 rows: 23 days), as a
# long-running database has them: with one timestamp for all rows PostgreSQL's plan for the
# webhook page's "first delivery since" queries sorted every row on ties (4 s a page).
SEED_SPACING_SECONDS = 2


def _at(now: Any, rows: int, i: int) -> Any:
    return now - timedelta(seconds=SEED_SPACING_SECONDS * (rows - 1 - i))


def _seed_executemany(
    cursor: Any, merchant_id: int, event_type_id: int, endpoint_id: int, rows: int, now: Any
) -> None:
    """`rows` events and one delivery each, inserted 50,000 at a time (SQLite)."""
    from django.db import connection

    ops, chunk = connection.ops, 50_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        cursor.executemany(
            "INSERT INTO deliveries_event (public_id, merchant_id, event_type_id, data, "
            "sequence, webhook_url, created_at) VALUES (%s, %s, %s, %s, %s, '', %s)",
            [
                (
                    f"evt_bench{start + i:015d}",
                    merchant_id,
                    event_type_id,
                    '{"n": 1}',
                    start + i + 1,
                    ops.adapt_datetimefield_value(_at(now, rows, start + i)),
                )
                for i in range(n)
            ],
        )
        cursor.execute(
            "SELECT MIN(id) FROM deliveries_event WHERE public_id >= %s",
            [f"evt_bench{start:015d}"],
        )
        first_event = cursor.fetchone()[0]
        cursor.executemany(
            "INSERT INTO deliveries_delivery (public_id, merchant_id, event_id, endpoint_id, "
            "url, status, attempts, claimed_by, last_status_code, last_error, created_at, "
            "completed_at, last_duration_ms) "
            "VALUES (%s, %s, %s, %s, '', %s, 1, '', %s, '', %s, %s, 12)",
            [
                (
                    f"dlv_bench{start + i:015d}",
                    merchant_id,
                    first_event + i,
                    endpoint_id,
                    "failed" if i % 50 == 0 else "succeeded",
                    500 if i % 50 == 0 else 200,
                    ops.adapt_datetimefield_value(_at(now, rows, start + i)),
                    ops.adapt_datetimefield_value(_at(now, rows, start + i)),
                )
                for i in range(n)
            ],
        )


def _seed_postgres(
    merchant_id: int, event_type_id: int, endpoint_id: int, rows: int, now: Any
) -> None:
    """The same rows as the executemany loop, built by PostgreSQL itself (10 x faster).

    Events and deliveries are committed apart, with fresh statistics between them: in one
    transaction the deliveries' 1,000,000 deferred foreign-key checks ran at COMMIT with
    statistics an autovacuum had taken mid-transaction (`reltuples` 0 over 16,400 pages,
    since rows not yet committed do not count), and that COMMIT ran for more than 8 minutes
    of CPU in one `make bench` (38 s otherwise).
    """
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO deliveries_event (public_id, merchant_id, event_type_id, data, "
            "sequence, webhook_url, created_at) SELECT 'evt_bench' || lpad(g::text, 15, '0'), "
            "%s, %s, '{\"n\": 1}'::jsonb, g + 1, '', "
            "%s - (%s - 1 - g) * %s * interval '1 second' FROM generate_series(0, %s - 1) AS g",
            [merchant_id, event_type_id, now, rows, SEED_SPACING_SECONDS, rows],
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deliveries_event")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO deliveries_delivery (public_id, merchant_id, event_id, endpoint_id, "
            "url, status, attempts, claimed_by, last_status_code, last_error, created_at, "
            "completed_at, last_duration_ms) SELECT 'dlv_bench' || lpad((e.sequence - 1)::text, "
            "15, '0'), %s, e.id, %s, '', CASE WHEN e.sequence %% 50 = 1 THEN 'failed' ELSE "
            "'succeeded' END, 1, '', CASE WHEN e.sequence %% 50 = 1 THEN 500 ELSE 200 END, '', "
            "e.created_at, e.created_at, 12 FROM deliveries_event e WHERE e.merchant_id = %s "
            "ORDER BY e.id",
            [merchant_id, endpoint_id, merchant_id],
        )


def memory(receiver: Receiver, events: int, endpoints: int) -> dict[str, Any]:
    from deliveries import emit

    clean_tables()
    receiver.reset()
    merchant = merchant_with_endpoints(
        [receiver.url(f"/ok/m{n}") for n in range(endpoints)], log_mode="none"
    )
    total = events * endpoints
    pool = Workers(1)
    samples: list[tuple[int, float]] = []
    for n in range(events):
        emit(merchant, "inventory_levels.update", payload(n))
        if n % 500 == 0:
            samples.append((succeeded(), pool.rss_mb()[0]))
    wait_for(lambda: succeeded() == total, 900, "memory run")
    end_rss = pool.rss_mb()[0]
    pool.stop()
    # Growth is measured from the first sample after warm-up (10 % of the run).
    warm = next((rss for done, rss in samples if done >= total // 10), samples[-1][1])
    return {
        "deliveries": total,
        "rss_after_warmup_mb": warm,
        "rss_end_mb": end_rss,
        "growth_percent": round((end_rss - warm) / warm * 100, 1),
    }
