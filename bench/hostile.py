"""Issue 13's hostile neighbour: one merchant's receivers against another's, on PostgreSQL."""

from __future__ import annotations

import json
import time
from typing import Any

from bench.harness import (
    Receiver,
    Workers,
    clean_tables,
    closed_port,
    gunicorn,
    merchant_with_endpoints,
    payload,
    percentile,
)

# Besides the p99 target, each of these figures must be 0.
HOSTILE_ZEROS = ("innocent_lost", "sent_twice_while_in_flight", "failed_rq_jobs")


def on_postgres(receiver: Receiver, quick: bool) -> dict[str, Any]:
    """hostile_neighbour, in the PostgreSQL run of bench/run.py (a process of its own)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        raise RuntimeError("hostile_neighbour runs on PostgreSQL: bench.run --database postgres")
    return hostile_neighbour(receiver, 20 if quick else 60)


def _hostile_merchant(receiver: Receiver, dead_port: int) -> dict[str, Any]:
    """The hostile merchant's endpoints, one event type per kind, so each gets its own count."""
    from accounts.models import Merchant
    from catalogue.models import EventType
    from endpoints.models import Endpoint

    merchant = Merchant.objects.create(name="Hostile")
    kinds = {
        "hang": ("inventory_levels.update", [receiver.url(f"/hang/{n}") for n in range(20)]),
        "slow25": ("products.update", [receiver.url("/slow25/0")]),
        "dead": ("customers.update", [f"http://127.0.0.1:{dead_port}/dead"]),
        "poison": ("receipts.update", [receiver.url("/poison/0")]),
    }
    for type_name, urls in kinds.values():
        event_type = EventType.objects.get(name=type_name)
        for url in urls:
            Endpoint.objects.create(merchant=merchant, url=url).event_types.add(event_type)
    return {"merchant": merchant, "types": {k: t for k, (t, _) in kinds.items()}}


def _emit_backlog(merchant: Any, type_name: str, events: int) -> None:
    """Many events at once, the way a POS catching up after an outage sends them."""
    from django.db import transaction

    from deliveries import emit

    for start in range(0, events, 500):
        with transaction.atomic():
            for n in range(start, min(events, start + 500)):
                emit(merchant, type_name, {"n": n})


def hostile_neighbour(receiver: Receiver, innocent_seconds: int) -> dict[str, Any]:
    """Issue 13's scenario: a hostile merchant's receivers against an innocent merchant's.

    Hostile: 20 endpoints that hang past the 30-second deadline (600 deliveries), one that
    answers after 25 s (40 deliveries, cap 10), a dead one (connection refused) with a
    10,000-delivery backlog, and one answering 429 with a poisoned Retry-After. Innocent:
    2 events a second through the API for `innocent_seconds`, timed from the API's answer
    to the receiver. Two workers.
    """

    from accounts.models import ApiKey

    clean_tables()
    receiver.reset()
    hostile = _hostile_merchant(receiver, closed_port())
    merchant, types = hostile["merchant"], hostile["types"]
    t0 = time.monotonic()
    _emit_backlog(merchant, types["dead"], 10_000)
    _emit_backlog(merchant, types["hang"], 30)
    _emit_backlog(merchant, types["slow25"], 40)
    _emit_backlog(merchant, types["poison"], 40)
    backlog_seconds = time.monotonic() - t0
    innocent = merchant_with_endpoints([receiver.url("/ok/innocent")])
    key = ApiKey.issue(innocent, "bench")[1]
    server, port = gunicorn()
    pool = Workers(2)
    try:
        figures = _innocent_run(receiver, port, key, innocent_seconds, merchant)
    finally:
        pool.stop()
        server.terminate()
        server.wait()
    return {
        "database": "postgresql",
        "workers": 2,
        "hostile_backlog_seconds": round(backlog_seconds, 1),
        **figures,
    }


def _innocent_run(
    receiver: Receiver, port: int, key: str, innocent_seconds: int, merchant: Any
) -> dict[str, Any]:
    """Post the innocent merchant's events through the API while the hostile work runs."""
    import urllib3
    from django.db.models import Count
    from django_rq import get_queue
    from rq.registry import FailedJobRegistry

    from deliveries.models import Delivery
    from endpoints.models import Endpoint

    time.sleep(5)  # the hostile work fills the workers first
    http = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    answered: dict[str, float] = {}
    started = time.monotonic()
    for n in range(innocent_seconds * 2):
        time.sleep(max(0.0, started + n * 0.5 - time.monotonic()))
        body = json.dumps({"type": "inventory_levels.update", "data": payload(n)})
        response = http.urlopen("POST", "/api/v1/events", body=body, headers=headers, timeout=30)
        answered[json.loads(response.data)["event"]["id"]] = time.time()

    def innocent_seen() -> dict[str, float]:
        return {w: t for p, w, t in receiver.stats(times=True)["times"] if p == "/ok/innocent"}

    deadline = time.monotonic() + 60  # a lost event is counted, not waited for forever
    while len(innocent_seen()) < len(answered) and time.monotonic() < deadline:
        time.sleep(0.2)
    seen = innocent_seen()
    latencies = [(seen[w] - at) * 1000 for w, at in answered.items() if w in seen]
    stats = receiver.stats()
    failed_jobs = FailedJobRegistry(queue=get_queue("default")).count
    dead = Endpoint.objects.get(url__endswith="/dead")
    statuses = dict(
        Delivery.objects.filter(merchant=merchant).values_list("status").annotate(n=Count("id"))
    )
    return {
        "innocent_events": len(answered),
        "innocent_received": len(latencies),
        "innocent_lost": len(answered) - len(latencies),
        "innocent_p50_ms": round(percentile(latencies, 50), 1),
        "innocent_p99_ms": round(percentile(latencies, 99), 1),
        "innocent_max_ms": round(max(latencies), 1),
        "sent_twice_while_in_flight": stats["overlaps"],
        "slow_endpoint_most_in_flight": stats["max_in_flight_by_kind"].get("slow25", 0),
        "slow_endpoint_cap": 10,
        "dead_endpoint_breaker": dead.breaker_label(),
        "hostile_statuses": statuses,
        "failed_rq_jobs": failed_jobs,
    }
