"""The throughput and latency scenarios of `make bench` (see bench/run.py)."""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from bench.harness import (
    Receiver,
    Workers,
    clean_tables,
    gunicorn,
    latencies_ms,
    merchant_with_endpoints,
    payload,
    percentile,
    succeeded,
    wait_for,
)

# --- scenarios ---------------------------------------------------------------------------


def limit(receiver: Receiver, seconds: float) -> dict[str, Any]:
    """A plain requests.Session().post loop: the HTTP client's ceiling in one process."""
    import requests

    from lib import signing

    body = json.dumps({"id": "evt_x", "data": payload(1)}).encode()
    headers = {"content-type": "application/json"}
    headers.update(signing.headers([b"k" * 32], "evt_x", int(time.time()), body))
    session = requests.Session()
    url = receiver.url("/ok/limit")
    for _ in range(200):
        session.post(url, data=body, headers=headers)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.post(url, data=body, headers=headers)
        count += 1
    rate = count / (time.perf_counter() - started)
    return {"requests_per_second": round(rate), "body_bytes": len(body), "seconds": seconds}


def fast(
    receiver: Receiver, workers: int, events: int, endpoints: int, limit_seconds: float
) -> dict[str, Any]:
    from deliveries import emit
    from deliveries.models import Delivery

    # The machine is shared and its speed drifts over minutes: the ratio compares with the
    # client's limit measured right before this run, side by side.
    lim = limit(receiver, limit_seconds)["requests_per_second"]
    clean_tables()
    receiver.reset()
    merchant = merchant_with_endpoints(
        [receiver.url(f"/ok/{n}") for n in range(endpoints)], log_mode="full"
    )
    pool = Workers(workers)
    total = events * endpoints
    started = datetime.now(UTC)
    t0 = time.monotonic()
    for n in range(events):
        emit(merchant, "inventory_levels.update", payload(n))
    emit_seconds = time.monotonic() - t0
    wait_for(lambda: succeeded() == total, 600, "fast deliveries")
    last = Delivery.objects.order_by("-completed_at").values_list("completed_at", flat=True)[0]
    elapsed = (last - started).total_seconds()
    rss = pool.rss_mb()
    pool.stop()
    stats = receiver.stats()
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
        "ratio_to_limit": round(rate / lim, 2),
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
    wait_for(lambda: succeeded() == total, 600, "slow deliveries")
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


def emit_api(receiver: Receiver, requests_count: int, clients: int) -> dict[str, Any]:
    """POST /api/v1/events through gunicorn, 10 subscribed endpoints per event.

    The load generator shares the two cores with the server it measures, so it uses urllib3
    (requests' own transport, about half of requests' CPU per call), as one would use wrk.
    """
    from concurrent.futures import ThreadPoolExecutor

    import urllib3

    from accounts.models import ApiKey

    clean_tables()
    merchant = merchant_with_endpoints([receiver.url(f"/ok/{n}") for n in range(10)])
    key = ApiKey.issue(merchant, "bench")[1]
    server, port = gunicorn(workers=3)
    path = "/api/v1/events"
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    body = json.dumps({"type": "inventory_levels.update", "data": payload(1)})
    local = __import__("threading").local()

    def post(_: int) -> int:
        if not hasattr(local, "pool"):
            local.pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False)
        return local.pool.urlopen("POST", path, body=body, headers=headers, timeout=30).status

    post(0)  # warm up: the first request of a gunicorn worker loads the application
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        codes = list(pool.map(post, range(requests_count)))
        elapsed = time.perf_counter() - started
    server.terminate()
    server.wait()
    return {
        "requests": requests_count,
        "clients": clients,
        "gunicorn_workers": 3,
        "load_generator": "urllib3, one connection per client thread",
        "endpoints_per_event": 10,
        "accepted": codes.count(202),
        "events_per_second": round(requests_count / elapsed),
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
    ops, now = connection.ops, timezone.now()
    t0 = time.monotonic()
    chunk = 50_000
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            cursor.executemany(
                "INSERT INTO deliveries_event (public_id, merchant_id, event_type_id, data, "
                "sequence, webhook_url, created_at) VALUES (%s, %s, %s, %s, %s, '', %s)",
                [
                    (
                        f"evt_bench{start + i:015d}",
                        merchant.pk,
                        event_type.pk,
                        '{"n": 1}',
                        start + i + 1,
                        ops.adapt_datetimefield_value(now),
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
                        merchant.pk,
                        first_event + i,
                        endpoint.pk,
                        "failed" if i % 50 == 0 else "succeeded",
                        500 if i % 50 == 0 else 200,
                        ops.adapt_datetimefield_value(now),
                        ops.adapt_datetimefield_value(now),
                    )
                    for i in range(n)
                ],
            )
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
