"""Leases by the database's clock; SQLite's write lock waits with a limit (issue 13, item 8).

A worker machine whose clock ran ahead released other workers' live leases (and sent their
deliveries again); a process that held SQLite's write lock made every other writer wait
forever.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import OperationalError, connection, connections

from accounts.models import Merchant
from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FAKETIME = next(
    (p for p in Path("/usr/lib").glob("*/faketime/libfaketime.so.1") if p.exists()), None
)


@pytest.mark.skipif(FAKETIME is None, reason="libfaketime is installed by `make test`")
def test_it_keeps_a_lease_when_another_workers_clock_runs_ahead(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite is a file on this machine: this machine's clock is its clock")
    make_endpoint(receiver.url(), timeout_seconds=5, max_in_flight=1)
    receiver.default = Answer(200, b"ok", delay=4)
    event = emit(merchant, "receipts.update", {"n": 1})
    start_worker()
    wait_until(lambda: receiver.in_flight == 1, timeout=30, what="the send in flight")

    # A second machine whose clock is two minutes ahead sweeps while the send is in flight.
    start_worker(LD_PRELOAD=str(FAKETIME), FAKETIME="+120s", FAKETIME_DONT_FAKE_MONOTONIC="1")
    wait_until(lambda: Delivery.objects.get(event=event).status == "succeeded", timeout=30)
    wait_until(lambda: receiver.in_flight == 0, timeout=10)

    assert Counter(r.headers["webhook-id"] for r in receiver.requests) == {event.public_id: 1}


def test_it_gives_up_on_a_held_sqlite_write_lock_with_a_clear_error(
    merchant: Merchant, tmp_path: Path
) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL has no machine-wide write lock")
    lock_path = str(connection.settings_dict["NAME"]) + ".writelock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({lock_path!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        outcome: list[BaseException | None] = []

        options = connections["default"].settings_dict.setdefault("OPTIONS", {})
        previous = options.get("timeout")
        options["timeout"] = 1  # shared by every thread's connection: restored below

        def write() -> None:
            try:
                emit(merchant, "receipts.update", {"n": 1})
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)
            finally:
                connections["default"].close()

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        thread.join(timeout=15)
        options["timeout"] = previous
        assert outcome, "the write still waits for the lock"
        assert isinstance(outcome[0], OperationalError)
        assert "database is locked" in str(outcome[0]) and "1 s" in str(outcome[0])
    finally:
        holder.kill()
        holder.wait()
