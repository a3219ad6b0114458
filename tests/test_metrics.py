"""/metrics: the Prometheus text format, behind a token, moving as deliveries happen."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import Merchant
from deliveries import emit, observability
from deliveries.engine import disable_endpoint, send_test
from deliveries.engine.claiming import Load, claim
from deliveries.engine.recording import record
from deliveries.engine.sending import AttemptResult, attempt
from deliveries.models import Delivery
from endpoints.models import Endpoint
from tests.conftest import Answer, Receiver
from webhooks_project import embedded_redis

TOKEN = "metrics-token-for-tests"


def deliver_now(limit: int = 100) -> list[AttemptResult]:
    """Claim, send (real HTTP) and record what is due, as a worker's pump does."""
    token = uuid.uuid4().hex
    claimed = claim(token, limit, Load(limit))
    results = [attempt(delivery) for delivery in claimed]
    record(token, results)
    return results


@pytest.fixture
def metrics_settings(settings: Any) -> Any:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_CACHE_SECONDS = 0
    return settings


def scrape(client: Client | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by name and labels."""
    response = (client or Client()).get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    assert response["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def failing_receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.default = Answer(500)
    yield r
    r.stop()


def test_it_refuses_metrics_without_the_right_token(metrics_settings: Any, db: None) -> None:
    client = Client()
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["www-authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", headers={"authorization": "Bearer guess"})
    assert wrong.status_code == 403
    assert client.get("/metrics?token=guess").status_code == 403
    assert b"webhooks_" not in missing.content + wrong.content


def test_it_says_to_set_metrics_token_when_none_is_configured(settings: Any, db: None) -> None:
    settings.METRICS_TOKEN = ""
    response = Client().get("/metrics", headers={"authorization": "Bearer anything"})
    assert response.status_code == 403
    assert b"set METRICS_TOKEN" in response.content


def test_it_serves_every_metric_in_a_format_prometheus_parses(
    metrics_settings: Any, db: None, redis_conn: Any
) -> None:
    samples = scrape()
    names = {name for name, _ in samples}
    for expected in (
        "webhooks_deliveries_due",
        "webhooks_oldest_due_seconds",
        "webhooks_endpoints_auto_disabled",
        "webhooks_redis_up",
        "webhooks_queue_depth",
        "webhooks_workers",
        "webhooks_attempts_total",
        "webhooks_delivery_latency_seconds_bucket",
        "webhooks_delivery_latency_seconds_count",
        "webhooks_delivery_latency_seconds_sum",
    ):
        assert expected in names, expected
    assert value(samples, "webhooks_redis_up") == 1
    # The token may also come as a query parameter (for scrapers that cannot set headers).
    assert Client().get(f"/metrics?token={TOKEN}").status_code == 200


def test_it_counts_attempt_outcomes_and_latency_of_a_batch(
    metrics_settings: Any,
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    failing_receiver: Receiver,
    redis_conn: Any,
) -> None:
    make_endpoint(receiver.url("/ok"))
    make_endpoint(failing_receiver.url("/down"))
    for n in range(3):
        emit(merchant, "receipts.update", {"n": n})
    queued = scrape()
    assert value(queued, "webhooks_deliveries_due") == 6
    assert value(queued, "webhooks_deliveries", status="pending", event_type="receipts.update") == 6

    results = deliver_now()
    assert len(results) == 6
    # observe() on its own, whether or not recording the batch already observed it.
    before = scrape()
    observability.observe(results)
    after = scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("webhooks_attempts_total", code_class="2xx") == 3
    assert moved("webhooks_attempts_total", code_class="5xx") == 3
    latency = "webhooks_delivery_latency_seconds"
    assert moved(f"{latency}_count") == 3
    assert moved(f"{latency}_bucket", le="+Inf") == 3
    # Delivered over loopback within a minute of the emit: in the 60-second bucket.
    assert moved(f"{latency}_bucket", le="60.0") == 3
    assert moved(f"{latency}_sum") > 0
    assert (
        value(after, "webhooks_deliveries", status="succeeded", event_type="receipts.update") == 3
    )
    # The failures wait for their retry: pending, but not due yet.
    assert value(after, "webhooks_deliveries", status="pending", event_type="receipts.update") == 3
    assert value(after, "webhooks_deliveries_due") == 0


def test_it_moves_counters_when_a_test_is_sent(
    metrics_settings: Any,
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    redis_conn: Any,
) -> None:
    endpoint = make_endpoint(receiver.url("/ok"))
    before = scrape()
    send_test(endpoint)  # claimed, sent and recorded in this process, outside any worker
    after = scrape()
    attempts = "webhooks_attempts_total"
    assert value(after, attempts, code_class="2xx") - value(before, attempts, code_class="2xx") == 1


def test_it_moves_counters_when_a_worker_delivers(
    metrics_settings: Any,
    transactional_db: None,
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    work: Callable[..., None],
) -> None:
    make_endpoint(receiver.url("/ok"))
    before = scrape()
    for n in range(4):
        emit(merchant, "receipts.update", {"n": n})
    work(until=lambda: Delivery.objects.filter(status="succeeded").count() == 4)
    after = scrape()
    attempts = "webhooks_attempts_total"
    assert value(after, attempts, code_class="2xx") - value(before, attempts, code_class="2xx") == 4
    latency = "webhooks_delivery_latency_seconds_count"
    assert value(after, latency) - value(before, latency) == 4


def test_it_counts_endpoints_the_platform_disabled(
    metrics_settings: Any, merchant: Merchant, redis_conn: Any
) -> None:
    gone = Endpoint.objects.create(merchant=merchant, url="https://gone.example.com/")
    disable_endpoint(gone, Endpoint.DisabledReason.GONE, "410")
    failing = Endpoint.objects.create(merchant=merchant, url="https://failing.example.com/")
    disable_endpoint(failing, Endpoint.DisabledReason.FAILING, "48 hours of failures")
    disable_endpoint(Endpoint.objects.create(merchant=merchant, url="https://paused.example.com/"))
    samples = scrape()
    assert value(samples, "webhooks_endpoints_auto_disabled", reason="gone") == 1
    assert value(samples, "webhooks_endpoints_auto_disabled", reason="failing") == 1


def test_it_reports_the_age_of_the_oldest_due_delivery(
    metrics_settings: Any,
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    redis_conn: Any,
) -> None:
    make_endpoint("https://receiver.example.com/hook")
    event = emit(merchant, "receipts.update", {})
    event.deliveries.update(next_attempt_at=event.created_at - timedelta(minutes=5))
    assert value(scrape(), "webhooks_oldest_due_seconds") >= 300


def test_it_keeps_delivering_and_serving_metrics_while_redis_is_down(
    metrics_settings: Any,
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_endpoint(receiver.url("/ok"))
    emit(merchant, "receipts.update", {})
    emit(merchant, "receipts.update", {})
    monkeypatch.setattr(observability, "_warned_at", float("-inf"))
    embedded_redis.stop(django_settings.TEST_REDIS_DIR)
    try:
        results = deliver_now()
        with caplog.at_level(logging.WARNING, logger="deliveries.observability"):
            observability.observe(results[:1])  # must not raise
            observability.observe(results[1:])
        warnings = [r for r in caplog.records if "metrics not recorded" in r.getMessage()]
        assert len(warnings) == 1  # at most once a minute, not once per batch
        assert Delivery.objects.filter(status="succeeded").count() == 2

        samples = scrape()
        assert value(samples, "webhooks_redis_up") == 0
        assert (
            value(samples, "webhooks_deliveries", status="succeeded", event_type="receipts.update")
            == 2
        )
    finally:
        embedded_redis.ensure_running(django_settings.TEST_REDIS_DIR)
