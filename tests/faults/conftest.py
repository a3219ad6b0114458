"""Fault-test fixtures: worker processes we can kill, a fast receiver in its own process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import database_url

BASE = Path(__file__).resolve().parent.parent.parent


def wait_until(condition: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.1)


@pytest.fixture
def start_worker(redis_conn: Any) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real `run_worker` processes on the test database and Redis."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*command: str, **env: str) -> subprocess.Popen[bytes]:
        """A worker process: `run_worker`, or another manage.py command given as `command`."""
        full = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webhooks_project.settings_test",
            "DATABASE_URL": database_url(),
            "WEBHOOK_LEASE_MARGIN_SECONDS": "1",
            **env,
        }
        # A session of its own, so a kill reaches the worker's scheduler process too, as
        # when a machine dies.
        proc = subprocess.Popen(
            [sys.executable, str(BASE / "manage.py"), *(command or ("run_worker",))],
            cwd=BASE,
            env=full,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class FastReceiver:
    """bench/receiver.py in its own process: counts deliveries by (path, webhook-id)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", "--port", "0"],
            cwd=BASE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline().split()[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url("/_stats"), timeout=10) as response:
            return json.load(response)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def fast_receiver() -> Iterator[FastReceiver]:
    receiver = FastReceiver()
    yield receiver
    receiver.stop()
