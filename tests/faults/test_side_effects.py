"""E-mails are their own jobs with a timeout: a stalled mail server stops no delivery.

Issue 13, item 6: auto-disable and warning e-mails were sent on the pump's thread with no
EMAIL_TIMEOUT, so a mail server that accepted the connection and never answered stopped the
worker, and its claims expired.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from accounts.models import Merchant
from deliveries import emit
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stalled_smtp() -> Iterator[int]:
    """A mail server that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_it_keeps_delivering_while_the_mail_server_stalls(
    merchant: Merchant,
    outsider_merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    stalled_smtp: int,
) -> None:
    merchant.notification_email = "ops@example.com"
    merchant.save()
    gone = make_endpoint(receiver.url("/gone"))
    receiver.routes["/gone"] = Answer(410, b"gone")
    make_endpoint(receiver.url("/innocent"), merchant=outsider_merchant)
    start_worker(EMAIL_URL=f"smtp://127.0.0.1:{stalled_smtp}", EMAIL_TIMEOUT="3")

    emit(merchant, "receipts.update", {"n": 1})
    wait_until(lambda: not Endpoint.objects.get(pk=gone.pk).is_enabled, timeout=30)
    posted = time.time()
    for n in range(5):
        emit(outsider_merchant, "receipts.update", {"n": n})
        time.sleep(0.5)
    wait_until(
        lambda: sum(r.path == "/innocent" for r in receiver.requests) == 5,
        timeout=15,
        what="the other merchant's deliveries",
    )
    innocent = [r for r in receiver.requests if r.path == "/innocent"]
    assert innocent[-1].at - posted < 3 + 2.5 + 3  # at most one e-mail timeout late


def test_it_keeps_claiming_while_e_mail_jobs_wait_on_a_stalled_mail_server(
    merchant: Merchant,
    outsider_merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    stalled_smtp: int,
) -> None:
    # Four endpoints answer 410: four e-mail jobs, each waiting 4 s on the mail server. RQ
    # runs one job at a time, so a pump run as a job waited behind all of them (16 s); the
    # pump runs on its own thread and claims meanwhile.
    merchant.notification_email = "ops@example.com"
    merchant.save()
    gone = [make_endpoint(receiver.url(f"/gone/{n}")) for n in range(4)]
    for n in range(4):
        receiver.routes[f"/gone/{n}"] = Answer(410, b"gone")
    make_endpoint(receiver.url("/innocent"), merchant=outsider_merchant)
    start_worker(EMAIL_URL=f"smtp://127.0.0.1:{stalled_smtp}", EMAIL_TIMEOUT="4")

    emit(merchant, "receipts.update", {"n": 1})
    wait_until(
        lambda: not Endpoint.objects.filter(pk__in=[g.pk for g in gone], is_enabled=True),
        timeout=30,
        what="the four endpoints disabled",
    )
    lags = []
    for n in range(6):
        posted = time.time()
        emit(outsider_merchant, "receipts.update", {"n": n})
        wait_until(
            lambda n=n: sum(r.path == "/innocent" for r in receiver.requests) == n + 1,
            timeout=30,
            what="the other merchant's delivery",
        )
        lags.append([r for r in receiver.requests if r.path == "/innocent"][-1].at - posted)
        time.sleep(0.5)

    assert max(lags) < 3, lags
