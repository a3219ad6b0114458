"""`make bench`: the delivery path measured end to end on this machine.

Everything runs on 127.0.0.1: an embedded Redis, real `run_worker` processes, gunicorn for
the emit scenario, and bench/receiver.py as the fast, slow and dead receivers. Figures are
ratios to the HTTP client's own limit measured in the same run, because the machine is
shared and noisy. Results go to var/bench/results.json (one object per scenario).

    python -m bench.run [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

BASE = Path(__file__).resolve().parent.parent
VAR = BASE / "var" / "bench"
VAR_POSTGRES = BASE / "var" / "bench-postgres"  # its own Redis and cluster, beside SQLite's
ENV = {
    "DJANGO_SETTINGS_MODULE": "webhooks_project.settings",
    "VAR_DIR": str(VAR),
    "DEBUG": "0",
    "SECRET_KEY": "bench-" + "x" * 50,
    "FIELD_ENCRYPTION_KEY": "YmVuY2gta2V5LW9ubHktZm9yLXRoZS1iZW5jaG1hcms=",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
    "SECURE_SSL_REDIRECT": "0",
    "WEBHOOK_REQUIRE_HTTPS": "0",
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    "API_RATE_LIMIT": "10000000/minute",
    "LOG_LEVEL": "WARNING",
}


def prepare(database: str = "sqlite") -> None:
    global VAR
    if database == "postgres":
        VAR = VAR_POSTGRES
    ENV["VAR_DIR"] = str(VAR)
    if VAR.exists():
        shutil.rmtree(VAR)
    VAR.mkdir(parents=True)
    os.environ.update(ENV)
    if database == "postgres":
        os.environ["DATABASE_URL"] = postgres_database()
    from webhooks_project import embedded_redis

    # Started once here and passed down: a busy machine made a worker's start-up ping time out
    # and start a second server over the first one's socket.
    os.environ["REDIS_URL"] = embedded_redis.ensure_running(VAR / "redis")
    sys.path.insert(0, str(BASE))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)


def postgres_database() -> str:
    """A fresh `bench` database in the private cluster of `make test-postgres` (under VAR)."""
    from webhooks_project import embedded_postgres

    url = embedded_postgres.start(VAR / "postgres")
    socket_dir = url.split("@", 1)[1].rsplit(":", 1)[0]
    psql = embedded_postgres.bindir() / "psql"
    for sql in ("DROP DATABASE IF EXISTS bench", "CREATE DATABASE bench"):
        embedded_postgres.run_as_owner(
            [str(psql), "-q", "-h", unquote(socket_dir), "-p", str(embedded_postgres.PORT),
             "-U", "postgres", "-d", "postgres", "-c", sql],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return url.rsplit("/", 1)[0] + "/bench"


# --- helpers ---------------------------------------------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver"], cwd=BASE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline().split()[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self, times: bool = False) -> dict[str, Any]:
        query = "?times=1" if times else ""
        with urllib.request.urlopen(self.url(f"/_stats{query}"), timeout=30) as response:
            return json.load(response)

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.url("/_reset"), method="POST")).read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class Workers:
    def __init__(self, count: int) -> None:
        env = {**os.environ}
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(BASE / "manage.py"), "run_worker", "--name", f"bench-{n}"],
                cwd=BASE,
                env=env,
                start_new_session=True,
            )
            for n in range(count)
        ]
        from rq import Worker

        from deliveries import jobs

        deadline = time.monotonic() + 60
        while len(Worker.all(connection=jobs.queue().connection)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.1)

    def rss_mb(self) -> list[float]:
        sizes = []
        for proc in self.procs:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            kb = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
            )
            sizes.append(round(kb / 1024, 1))
        return sizes

    def stop(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def clean_tables() -> None:
    from deliveries.models import Delivery, DeliveryAttempt, Event
    from endpoints.models import Endpoint, Merchant

    DeliveryAttempt.objects.all().delete()
    Delivery.objects.all().delete()
    Event.objects.all().delete()
    Endpoint.objects.all().delete()
    Merchant.objects.all().delete()


def merchant_with_endpoints(urls: list[str], **fields: Any) -> Any:
    from endpoints.models import Endpoint, EventType, Merchant

    merchant = Merchant.objects.create(name="Bench")
    event_type = EventType.objects.get(name="inventory_levels.update")
    for url in urls:
        endpoint = Endpoint.objects.create(merchant=merchant, url=url, **fields)
        endpoint.event_types.add(event_type)
    return merchant


def payload(n: int) -> dict[str, Any]:
    """About 1 KiB of JSON once enveloped and signed, like a real inventory update."""
    return {
        "inventory_levels": [
            {
                "product_id": f"prd_{n:08d}",
                "shop_id": "shop_1",
                "product_code": f"{n}",
                "in_stock": n % 50,
            }
            for _ in range(11)
        ]
    }


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def succeeded() -> int:
    from deliveries.models import Delivery

    return Delivery.objects.filter(status="succeeded").count()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- scenarios ---------------------------------------------------------------------------


def limit(receiver: Receiver, seconds: float) -> dict[str, Any]:
    """A plain requests.Session().post loop: the HTTP client's ceiling in one process."""
    import requests

    from deliveries import signing

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


def latencies_ms(receiver: Receiver, prefix: str) -> list[float]:
    """Emit-to-receipt for every (endpoint, event) the receiver saw under `prefix`."""
    from deliveries.models import Event

    seen = [(w, t) for p, w, t in receiver.stats(times=True)["times"] if p.startswith(prefix)]
    created = dict(
        Event.objects.filter(public_id__in={w for w, _ in seen}).values_list(
            "public_id", "created_at"
        )
    )
    return [(t - created[w].timestamp()) * 1000 for w, t in seen if w in created]


HEALTHY_EVENT_GAP = 0.02  # seconds: 50 events (500 deliveries) a second, half of one worker


def isolation(receiver: Receiver, backlog: int, healthy_events: int) -> dict[str, Any]:
    from deliveries import emit
    from endpoints.models import EventType

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

    from endpoints.models import ApiKey

    clean_tables()
    merchant = merchant_with_endpoints([receiver.url(f"/ok/{n}") for n in range(10)])
    key = ApiKey.issue(merchant, "bench")[1]
    port = 18765
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "webhooks_project.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "3",
            "--log-level",
            "warning",
        ],
        cwd=BASE,
        env={**os.environ},
    )
    path = "/api/v1/events"
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    body = json.dumps({"type": "inventory_levels.update", "data": payload(1)})
    local = __import__("threading").local()

    def post(_: int) -> int:
        if not hasattr(local, "pool"):
            local.pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False)
        return local.pool.urlopen("POST", path, body=body, headers=headers, timeout=30).status

    deadline = time.monotonic() + 60
    while True:
        try:
            post(0)
            break
        except urllib3.exceptions.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
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

    from endpoints.models import Endpoint, EventType, Merchant, User

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


def on_postgres(receiver: Receiver, quick: bool) -> dict[str, Any]:
    """Run hostile_neighbour on PostgreSQL, in a process of its own (Django is set up on
    SQLite in this one), or right here when this process is the PostgreSQL one."""
    from django.db import connection

    seconds = 20 if quick else 60
    if connection.vendor == "postgresql":
        return hostile_neighbour(receiver, seconds)
    command = [sys.executable, "-m", "bench.run", "--database", "postgres"]
    subprocess.run(command + (["--quick"] if quick else []), cwd=BASE, check=True)
    found = json.loads((VAR_POSTGRES / "results.json").read_text())
    return found["hostile_neighbour"]


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _hostile_merchant(receiver: Receiver, dead_port: int) -> dict[str, Any]:
    """The hostile merchant's endpoints, one event type per kind, so each gets its own count."""
    from endpoints.models import Endpoint, EventType, Merchant

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
    import urllib3
    from django.db.models import Count
    from django_rq import get_queue
    from rq.registry import FailedJobRegistry

    from deliveries.models import Delivery
    from endpoints.models import ApiKey, Endpoint

    clean_tables()
    receiver.reset()
    hostile = _hostile_merchant(receiver, _closed_port())
    merchant, types = hostile["merchant"], hostile["types"]
    t0 = time.monotonic()
    _emit_backlog(merchant, types["dead"], 10_000)
    _emit_backlog(merchant, types["hang"], 30)
    _emit_backlog(merchant, types["slow25"], 40)
    _emit_backlog(merchant, types["poison"], 40)
    backlog_seconds = time.monotonic() - t0
    innocent = merchant_with_endpoints([receiver.url("/ok/innocent")])
    key = ApiKey.issue(innocent, "bench")[1]
    server, port = _gunicorn()
    pool = Workers(2)
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
    pool.stop()
    server.terminate()
    server.wait()
    return {
        "database": "postgresql",
        "workers": 2,
        "hostile_backlog_seconds": round(backlog_seconds, 1),
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


def _gunicorn() -> tuple[subprocess.Popen[bytes], int]:
    import urllib3

    port = 18766
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "webhooks_project.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=BASE,
        env={**os.environ},
    )
    http = urllib3.HTTPConnectionPool("127.0.0.1", port, retries=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            http.urlopen("GET", "/healthz", timeout=5)
            return server, port
        except urllib3.exceptions.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


TARGETS = {
    "fast_1_worker": ("ratio_to_limit", ">=", 0.6),
    "fast_2_workers": ("ratio_to_limit", ">=", 1.0),
    "slow": ("deliveries_per_second", ">=", 150),
    "isolation": ("healthy_p99_ms", "<=", 1000),
    "latency_at_rest": ("p99_ms", "<=", 100),
    "emit": ("events_per_second", ">=", 300),
    "dashboard": ("webhook_detail_ms", "<=", 200),
    "memory": ("growth_percent", "<=", 10),
    "hostile_neighbour": ("innocent_p99_ms", "<=", 1000),
}
# The hostile neighbour's other promises: each of these figures must be 0.
HOSTILE_ZEROS = ("innocent_lost", "sent_twice_while_in_flight", "failed_rq_jobs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs, for trying changes")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="postgres: the private cluster of `make test-postgres` (hostile_neighbour only)",
    )
    args = parser.parse_args()
    q = args.quick
    only = set(filter(None, args.only.split(",")))
    if args.database == "postgres":
        only = {"hostile_neighbour"}
    prepare(args.database)
    receiver = Receiver()
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    }
    started = time.monotonic()
    limit_seconds = 3 if q else 5
    lim = limit(receiver, limit_seconds)
    results["limit"] = lim
    print(f"limit: {lim['requests_per_second']} requests/s", flush=True)
    plan: list[tuple[str, Any]] = [
        ("fast_1_worker", lambda: fast(receiver, 1, 500 if q else 2000, 10, limit_seconds)),
        ("fast_2_workers", lambda: fast(receiver, 2, 500 if q else 2000, 10, limit_seconds)),
        ("slow", lambda: slow(receiver, 25 if q else 100, 40)),
        ("isolation", lambda: isolation(receiver, 2000, 50 if q else 200)),
        ("latency_at_rest", lambda: at_rest(receiver, 50 if q else 200)),
        ("emit", lambda: emit_api(receiver, 500 if q else 2000, 8)),
        ("dashboard", lambda: dashboard(100_000 if q else 1_000_000)),
        ("memory", lambda: memory(receiver, 2_000 if q else 10_000, 10)),
        ("hostile_neighbour", lambda: on_postgres(receiver, q)),
    ]
    try:
        for name, scenario in plan:
            if only and name not in only:
                continue
            t0 = time.monotonic()
            results[name] = scenario()
            results[name]["scenario_seconds"] = round(time.monotonic() - t0, 1)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    finally:
        receiver.stop()
        from webhooks_project import embedded_redis

        embedded_redis.stop(VAR / "redis")
        if args.database == "postgres":
            from webhooks_project import embedded_postgres

            embedded_postgres.stop(VAR / "postgres")
    results["total_seconds"] = round(time.monotonic() - started, 1)
    (VAR / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| scenario | figure | target | met |\n|---|---|---|---|")
    for name, (key, op, target) in TARGETS.items():
        if name not in results:
            continue
        value = results[name][key]
        met = value >= target if op == ">=" else value <= target
        print(f"| {name} | {key} = {value} | {op} {target} | {'yes' if met else 'NO'} |")
    for key in HOSTILE_ZEROS if "hostile_neighbour" in results else ():
        value = results["hostile_neighbour"][key]
        print(f"| hostile_neighbour | {key} = {value} | == 0 | {'yes' if value == 0 else 'NO'} |")
    print(f"\nwritten to {VAR / 'results.json'} in {results['total_seconds']} s")


if __name__ == "__main__":
    main()
