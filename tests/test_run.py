"""`make run`'s runner, started for real: the Procfile's gunicorn, worker and scheduler
under honcho, on the embedded Redis."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.cron import CronScheduler

from webhooks_project import embedded_redis

BASE = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["content-type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["content-type"], exc.read()


def started_pids(output: str) -> dict[str, int]:
    """The Procfile processes honcho started, from its "web.1 started (pid=123)" lines."""
    return {name: int(pid) for name, pid in re.findall(r"(\S+) started \(pid=(\d+)\)", output)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def running(tmp_path: Path):
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE", "DATABASE_URL")
    }
    env.update(VAR_DIR=str(tmp_path), PORT=str(port), PYTHONUNBUFFERED="1")
    log = (tmp_path / "run.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhooks_project.run"],
        cwd=BASE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc, port, tmp_path, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        # Honcho starts each process in a session of its own: a failed test must not leave
        # them behind.
        log.seek(0)
        for pid in started_pids(log.read()).values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        embedded_redis.stop(tmp_path / "redis")


def test_it_serves_the_admin_and_runs_jobs_on_the_embedded_redis(running) -> None:
    proc, port, var, log = running
    site = f"http://127.0.0.1:{port}"
    assert wait_for(f"{site}/admin/login/", timeout=90) == 200
    log.seek(0)
    output = log.read()
    assert "Demo login: user 'demo', password '" in output
    # The Procfile's processes, with gunicorn serving the site and its static files.
    assert {"web.1", "worker.1", "scheduler.1"} <= set(started_pids(output))
    assert f"Listening at: http://127.0.0.1:{port}" in output
    status, content_type, css = get(f"{site}/static/admin/css/base.css")
    assert status == 200 and content_type.startswith("text/css")
    assert b"body" in css

    deadline = time.monotonic() + 60
    while (health := get(f"{site}/healthz"))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert health[0] == 200, health
    assert json.loads(health[2])["checks"]["workers"]["count"] == 1

    conn = redis.Redis(unix_socket_path=str(var / "redis" / "redis.sock"))
    [scheduler] = CronScheduler.all(conn)
    assert [job.name for job in scheduler.get_jobs()] == ["prune_deliveries"]
    job = Queue("default", connection=conn).enqueue("os.getpid")
    deadline = time.monotonic() + 30
    while job.get_status(refresh=True) != "finished" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.get_status() == "finished"
    # The job ran in the worker that the runner started, not in this process.
    assert job.return_value() not in (os.getpid(), proc.pid)

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    assert proc.wait(timeout=60) == 0
    log.seek(0)
    output = log.read()
    assert "Stopped." in output
    assert not embedded_redis.is_running(var / "redis")
    assert not [name for name, pid in started_pids(output).items() if alive(pid)]
