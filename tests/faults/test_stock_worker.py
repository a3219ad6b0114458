"""The ecosystem's own command runs a complete worker (issue 13, item 9).

`python manage.py rqworker --with-scheduler` started RQ's forking default without the sweep:
new events went out once and retries never happened.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from accounts.models import Merchant
from deliveries import emit
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_retries_with_the_stock_rqworker_command(
    merchant: Merchant,
    receiver: Receiver,
    make_endpoint: Callable[..., Endpoint],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    make_endpoint(receiver.url())
    receiver.answers = [Answer(500, b"not yet")]
    event = emit(merchant, "receipts.update", {"n": 1})

    start_worker("rqworker", "--with-scheduler", WEBHOOK_RETRY_BASE_SECONDS="1")
    wait_until(lambda: Delivery.objects.get(event=event).status == "succeeded", timeout=30)

    assert [r.headers["webhook-id"] for r in receiver.requests] == [event.public_id] * 2
