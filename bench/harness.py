"""The benchmark's harness: its own Redis and database, a receiver, worker processes.

Everything runs on 127.0.0.1: an embedded Redis, real worker processes, gunicorn, and
bench/receiver.py as the receivers. See bench/run.py.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
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
    url = url.rsplit("/", 1)[0] + "/bench"
    # BENCH_PGBOUNCER=1: everything reaches the cluster through PgBouncer in transaction mode.
    if os.environ.get("BENCH_PGBOUNCER") == "1":
        from webhooks_project import embedded_pgbouncer

        url = embedded_pgbouncer.start(VAR / "pgbouncer", url)
        atexit.register(embedded_pgbouncer.stop, VAR / "pgbouncer")
    return url


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
    """`count` worker processes, started and registered in RQ before this returns.

    Args:
        count: how many processes.
        command: "run_worker" (the documented wrapper) or "rqworker": the stock
            `python manage.py rqworker --with-scheduler` an operator would type, its output
            (RQ's INFO line per job) written to var/bench/rqworker-N.log.
        env: extra environment for the workers (e.g. WEBHOOK_MAX_IN_FLIGHT).
    """

    running: list[Workers] = []  # not stopped yet: stop_leftover_workers() ends them

    def __init__(
        self, count: int, command: str = "run_worker", env: dict[str, str] | None = None
    ) -> None:
        from rq import Worker

        from deliveries import jobs

        connection = jobs.queue().connection
        already = len(Worker.all(connection=connection))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []
        Workers.running.append(self)
        for n in range(count):
            output = None
            if command == "rqworker":
                args = ["rqworker", "--with-scheduler"]
                output = open(VAR / f"rqworker-{n}.log", "ab")  # noqa: SIM115 (closed in stop)
                self.logs.append(output)
            else:
                args = ["run_worker", "--name", f"bench-{n}-{time.monotonic_ns()}"]
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, str(BASE / "manage.py"), *args],
                    cwd=BASE,
                    env={**os.environ, **(env or {})},
                    start_new_session=True,
                    stdout=output,
                    stderr=output,
                )
            )
        deadline = time.monotonic() + 60
        while len(Worker.all(connection=connection)) < already + count:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("workers did not start")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

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
        if self in Workers.running:
            Workers.running.remove(self)
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for log in self.logs:
            log.close()


def stop_leftover_workers() -> None:
    """Stop the workers of a scenario that failed before stopping its own."""
    for pool in list(Workers.running):
        pool.stop()


def clean_tables() -> None:
    from accounts.models import Merchant
    from endpoints.models import Endpoint

    forget_deliveries()
    Endpoint.objects.all().delete()
    Merchant.objects.all().delete()


def forget_deliveries() -> None:
    """Delete every event, delivery and attempt; on PostgreSQL vacuum after a large delete.

    Else autovacuum cleans up after the deletes during the next run: a crowd run right after
    the memory scenario drained at half its rate, and scaling runs after a large one showed
    PostgreSQL at twice its CPU per delivery.
    """
    from django.db import connection

    from deliveries.models import Delivery, DeliveryAttempt, Event

    deleted = DeliveryAttempt.objects.all().delete()[0]
    deleted += Delivery.objects.all().delete()[0]
    Event.objects.all().delete()
    if connection.vendor == "postgresql" and deleted > 10_000:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def merchant_with_endpoints(urls: list[str], **fields: Any) -> Any:
    from accounts.models import Merchant
    from catalogue.models import EventType
    from endpoints.models import Endpoint

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


def all_succeeded(total: int) -> bool:
    """Whether `total` deliveries succeeded, looked at cheaply while any is unfinished: a
    COUNT over every succeeded row, every 50 ms, cost PostgreSQL 0.9 s of CPU in a 20 s run
    it was measuring. Pending and in-flight rows are each found through a partial index."""
    from deliveries.models import Delivery

    for status in ("pending", "delivering"):
        if Delivery.objects.filter(status=status).exists():
            return False
    return succeeded() == total


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


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


def closed_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (until someone binds it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn(workers: int = 2) -> tuple[subprocess.Popen[bytes], int]:
    """gunicorn serving the project on a free port of 127.0.0.1, once it answers."""
    import urllib3

    port = closed_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "webhooks_project.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
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
