"""/healthz: what a load balancer sees as real workers and Redis come and go."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from rq import Worker, worker_registration

from accounts.models import Merchant
from deliveries import emit, jobs
from deliveries.engine.sweeping import Sweeper
from deliveries.worker import DeliveryWorker
from endpoints.models import Endpoint
from tests.conftest import database_url
from tests.faults.conftest import wait_until
from webhooks_project import embedded_redis

BASE = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db(transaction=True)


def health() -> tuple[int, dict[str, Any]]:
    response = Client().get("/healthz")
    assert response["content-type"] == "application/json"
    return response.status_code, response.json()


@pytest.fixture
def worker(redis_conn: Any) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Real `manage.py run_worker` processes on the test database and Redis."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webhooks_project.settings_test",
            "DATABASE_URL": database_url(),
        }
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_worker"],
            cwd=BASE,
            env=env,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def redis_control() -> Iterator[Path]:
    yield settings.TEST_REDIS_DIR
    embedded_redis.ensure_running(settings.TEST_REDIS_DIR)  # leave Redis up, whatever happened


def listening() -> bool:
    """A worker is past start-up: its signal handlers are in place, so SIGTERM unregisters it
    (one killed while it starts stays registered until its key expires, as RQ does)."""
    return any(w.get_state() == "idle" for w in Worker.all(queue=jobs.queue()))


def stop(proc: subprocess.Popen[bytes]) -> None:
    wait_until(listening, 30, "the worker listening")
    proc.terminate()  # SIGTERM: a warm shutdown, as a supervisor stops a worker
    proc.wait(timeout=60)


def test_it_answers_503_until_a_worker_checks_in_and_again_once_it_stops(
    worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    status, body = health()
    assert status == 503
    assert body["status"] == "failing"
    assert body["failed"] == ["workers"]
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]

    proc = worker()
    wait_until(lambda: health()[0] == 200, 60, "a worker checking in")
    status, body = health()
    assert body["status"] == "ok" and body["failed"] == []
    assert body["checks"]["workers"]["count"] == 1
    assert body["checks"]["workers"]["last_heartbeat_seconds"] < 60
    assert body["queue_depth"] == 0 and body["oldest_due_seconds"] == 0

    stop(proc)
    status, body = health()
    assert (status, body["failed"]) == (503, ["workers"])
    assert "no worker has checked in" in body["checks"]["workers"]["error"]


def test_it_forgets_a_stopped_worker_even_when_its_last_sweep_ends_after_the_stop(
    redis_conn: Any,
) -> None:
    worker = DeliveryWorker([jobs.queue()], connection=redis_conn)
    worker.register_birth()
    in_upkeep, finish = threading.Event(), threading.Event()

    def late_upkeep() -> None:  # a sweep still running when the worker is told to stop
        in_upkeep.set()
        finish.wait(10)
        worker.ensure_registered()

    worker._sweeper = Sweeper(on_sweep=late_upkeep)
    worker._sweeper.start()
    assert in_upkeep.wait(10)
    threading.Timer(0.5, finish.set).start()
    worker.register_death()
    worker._sweeper.join(10)
    assert not redis_conn.sismember(worker_registration.REDIS_WORKER_KEYS, worker.key)
    assert health()[1]["failed"] == ["workers"]


def test_it_answers_503_naming_redis_while_it_is_down_and_200_once_it_is_back(
    worker: Callable[[], subprocess.Popen[bytes]], redis_control: Path
) -> None:
    proc = worker()
    wait_until(lambda: health()[0] == 200, 60, "a worker checking in")

    embedded_redis.stop(redis_control)
    status, body = health()
    assert (status, body["failed"]) == (503, ["redis"])
    assert body["checks"]["database"]["ok"]
    assert body["checks"]["redis"] == {"ok": False, "error": "not answering"}

    embedded_redis.ensure_running(redis_control)
    # This Redis keeps nothing across a restart, RQ's worker registry included: the same
    # worker process registers again on its own, with no restart.
    wait_until(lambda: health()[0] == 200, 30, "healthy again after the outage")
    status, body = health()
    assert body["checks"]["workers"]["count"] == 1
    assert proc.poll() is None


def test_it_reports_queue_depth_and_the_age_of_the_oldest_due_delivery(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint], redis_conn: Any
) -> None:
    make_endpoint("https://receiver.example.com/hook")
    event = emit(merchant, "receipts.update", {})
    assert event.deliveries.update(next_attempt_at=event.created_at - timedelta(seconds=90)) == 1
    jobs.queue().enqueue("os.getpid")
    status, body = health()
    assert status == 503  # no worker: nothing sends them
    assert body["oldest_due_seconds"] >= 90
    assert body["queue_depth"] >= 1


def test_it_answers_probes_by_address_and_over_plain_http(settings: Any, redis_conn: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.METRICS_TOKEN = "t"
    probe = Client(HTTP_HOST="10.0.3.7:8000")  # a load balancer uses the instance's address
    assert probe.get("/healthz").status_code == 503  # answered: no 400, no redirect to https
    assert probe.get("/metrics", headers={"authorization": "Bearer t"}).status_code == 200
    assert probe.get("/metrics").status_code == 401
    # Everything else still checks the host.
    assert probe.get("/admin/login/").status_code == 400
