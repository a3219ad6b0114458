"""The ecosystem's own command runs a complete worker (issue 13, item 9).

`python manage.py rqworker --with-scheduler` started RQ's forking default without the sweep:
new events went out once and retries never happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint, Merchant
from tests.conftest import Answer, Receiver, database_url
from tests.faults.conftest import BASE, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stock_worker(redis_conn: object) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webhooks_project.settings_test",
            "DATABASE_URL": database_url(),
            "WEBHOOK_RETRY_BASE_SECONDS": "1",
        }
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "--with-scheduler"],
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


def test_it_retries_with_the_stock_rqworker_command(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    stock_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    make_endpoint(receiver.url())
    receiver.answers = [Answer(500, b"not yet")]
    event = emit(merchant, "receipts.update", {"n": 1})

    stock_worker()
    wait_until(lambda: Delivery.objects.get(event=event).status == "succeeded", timeout=30)

    assert [r.headers["webhook-id"] for r in receiver.requests] == [event.public_id] * 2
