"""`make run`'s runner, started for real: web server, embedded Redis and a worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from rq import Queue

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
        embedded_redis.stop(tmp_path / "redis")


def test_it_serves_the_admin_and_runs_jobs_on_the_embedded_redis(running) -> None:
    proc, port, var, log = running
    assert wait_for(f"http://127.0.0.1:{port}/admin/login/", timeout=90) == 200
    log.seek(0)
    output = log.read()
    assert "Demo login: user 'demo', password '" in output
    conn = redis.Redis(unix_socket_path=str(var / "redis" / "redis.sock"))
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
    assert "Stopped." in log.read()
    assert not embedded_redis.is_running(var / "redis")
