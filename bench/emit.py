"""Ingestion through gunicorn: `POST /api/v1/events` one by one and `/api/v1/events/batch`."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import harness
from bench.cpu import CpuProfile, postmaster_pid
from bench.harness import Receiver, clean_tables, gunicorn, merchant_with_endpoints, payload

GUNICORN_WORKERS = 3


def emit_api(
    receiver: Receiver, requests_count: int, clients: int, batch: int = 0
) -> dict[str, Any]:
    """POST events through gunicorn (3 sync workers), 10 subscribed endpoints per event.

    `batch` 0: one event per `POST /api/v1/events`; otherwise `batch` events per
    `POST /api/v1/events/batch`. No worker runs: this measures ingestion (events and their
    deliveries stored, pump kicked). The load generator shares the two cores with the server
    it measures, so it uses urllib3 (requests' own transport, about half of requests' CPU per
    call), as one would use wrk.
    """
    import urllib3

    from accounts.models import ApiKey

    clean_tables()
    merchant = merchant_with_endpoints([receiver.url(f"/ok/{n}") for n in range(10)])
    key = ApiKey.issue(merchant, "bench")[1]
    server, port = gunicorn(workers=GUNICORN_WORKERS)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    one = {"type": "inventory_levels.update", "data": payload(1)}
    if batch:
        path, body = "/api/v1/events/batch", json.dumps({"events": [one] * batch})
    else:
        path, body = "/api/v1/events", json.dumps(one)
    local = threading.local()

    def post(_: int) -> int:
        if not hasattr(local, "pool"):
            local.pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False)
        return local.pool.urlopen("POST", path, body=body, headers=headers, timeout=60).status

    data_dir = harness.VAR / "postgres" / "data"
    profile = CpuProfile(
        {
            "gunicorn": lambda: [server.pid],
            "database": lambda: [p for p in [postmaster_pid(data_dir)] if p],
            "bench": lambda: [os.getpid()],
        }
    )
    try:
        post(0)  # warm up: the first request of a gunicorn worker loads the application
        with ThreadPoolExecutor(clients) as pool:
            profile.start()
            started = time.perf_counter()
            codes = list(pool.map(post, range(requests_count)))
            elapsed = time.perf_counter() - started
            cpu = profile.stop()
    finally:
        server.terminate()
        server.wait(timeout=60)
    # Only what the API accepted counts as emitted (a 429 or 500 stored nothing).
    accepted = codes.count(202)
    events = accepted * max(1, batch)
    return {
        "requests": requests_count,
        "events_per_request": max(1, batch),
        "events": events,
        "clients": clients,
        "gunicorn_workers": GUNICORN_WORKERS,
        "load_generator": "urllib3, one connection per client thread",
        "endpoints_per_event": 10,
        "accepted": accepted,
        "requests_per_second": round(requests_count / elapsed, 1),
        "events_per_second": round(events / elapsed),
        "cpu": cpu,
    }
