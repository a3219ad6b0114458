"""One structured log line per attempt: parseable, and never a secret or a body."""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Merchant
from deliveries import emit, observability
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver
from tests.test_metrics import deliver_now

BASE = Path(__file__).resolve().parent.parent
SECRET_DATA = "4111-1111-1111-1111"


def parse_logfmt(message: str) -> dict[str, str]:
    assert message.startswith("attempt "), message
    return dict(part.split("=", 1) for part in shlex.split(message[len("attempt ") :]))


def attempt_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "webhooks.attempts"]


def test_it_logs_one_parseable_line_per_attempt_without_secrets_or_bodies(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = receiver.server.server_port
    endpoint = make_endpoint(f"http://shop:hunter22@127.0.0.1:{port}/hook")
    receiver.answers = [Answer(200), Answer(503, body=b"upstream down")]
    events = [emit(merchant, "receipts.update", {"card": SECRET_DATA}) for _ in range(2)]
    results = deliver_now()

    caplog.set_level(logging.INFO, logger="webhooks.attempts")
    observability.observe(results)

    records = attempt_records(caplog)
    assert len(records) == 2
    lines = [parse_logfmt(r.getMessage()) for r in records]
    deliveries = {d.public_id: d for d in Delivery.objects.all()}
    for line in lines:
        delivery = deliveries[line["delivery"]]
        assert line["merchant"] == merchant.public_id
        assert line["endpoint"] == endpoint.public_id
        assert line["event"] == delivery.event.public_id
        assert line["type"] == "receipts.update"
        assert line["status"] == str(delivery.last_status_code)
        assert line["outcome"] == delivery.status
        assert int(line["duration_ms"]) >= 0
        assert line["attempt"] == "1"
    assert {line["event"] for line in lines} == {e.public_id for e in events}
    assert sorted(line["status"] for line in lines) == ["200", "503"]
    failed = next(line for line in lines if line["status"] == "503")
    assert (failed["outcome"], failed["error"]) == ("pending", "HTTP 503")
    # The fields travel with the record too, for a JSON formatter or a log shipper.
    assert records[0].fields["delivery"] in deliveries  # type: ignore[attr-defined]
    for secret in ("hunter22", endpoint.secret, SECRET_DATA, "upstream down", "127.0.0.1"):
        assert secret not in caplog.text, secret


def test_it_skips_attempt_lines_cheaply_at_the_default_warning_level(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Workers run with the defaults: no attempt lines, and no work spent building them.
    assert not logging.getLogger("webhooks.attempts").isEnabledFor(logging.INFO)
    assert logging.getLogger("rq.worker").getEffectiveLevel() == logging.WARNING
    make_endpoint(receiver.url())
    emit(merchant, "receipts.update", {})
    results = deliver_now()
    built: list[Any] = []
    monkeypatch.setattr(observability, "attempt_fields", built.append)
    observability.observe(results)
    assert built == []
    assert attempt_records(caplog) == []


def test_it_formats_lines_as_json_for_log_systems(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_endpoint(receiver.url())
    emit(merchant, "receipts.update", {})
    results = deliver_now()
    caplog.set_level(logging.INFO, logger="webhooks.attempts")
    observability.observe(results)
    [record] = attempt_records(caplog)
    line = json.loads(observability.JsonFormatter().format(record))
    assert line["logger"] == "webhooks.attempts"
    assert line["level"] == "INFO"
    assert line["merchant"] == merchant.public_id
    assert line["status"] == 200
    assert line["outcome"] == "succeeded"
    assert line["delivery"] == results[0].delivery.public_id


def test_it_refuses_an_unknown_log_format_at_start_up() -> None:
    env = {**os.environ, "LOG_FORMAT": "xml", "DJANGO_SETTINGS_MODULE": "webhooks_project.settings"}
    env.update(DEBUG="1", REDIS_URL="redis://127.0.0.1:1/0")
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=BASE, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "LOG_FORMAT: expected text or json, got 'xml'" in done.stderr


def test_it_logs_each_attempt_a_worker_makes(
    transactional_db: None,
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    work: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_endpoint(receiver.url())
    caplog.set_level(logging.INFO, logger="webhooks.attempts")
    for n in range(3):
        emit(merchant, "receipts.update", {"n": n})
    work(until=lambda: Delivery.objects.filter(status="succeeded").count() == 3)
    logged = {parse_logfmt(r.getMessage())["delivery"] for r in attempt_records(caplog)}
    assert logged == set(Delivery.objects.values_list("public_id", flat=True))
