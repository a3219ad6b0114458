"""`/healthz` for load balancers and `/metrics` for Prometheus.

Both are cheap enough to be polled every few seconds by several probes: the health check is
a handful of indexed queries and two Redis round trips; the metrics' one expensive query
(deliveries by status and type) is cached for METRICS_CACHE_SECONDS.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis import RedisError
from rq import worker_registration
from rq.utils import utcparse

from deliveries import jobs, observability
from deliveries.engine.claiming import oldest_due
from deliveries.models import Delivery
from endpoints.models import Endpoint

log = logging.getLogger(__name__)

PROBE_PATHS = {"/healthz", "/healthz/", "/metrics", "/metrics/"}


class ProbeMiddleware:
    """Answers /healthz and /metrics before host validation and the https redirect.

    A load balancer probes each instance by its address and over plain http, which
    ALLOWED_HOSTS and SECURE_SSL_REDIRECT would turn into 400s and 301s. Neither answer
    depends on the host; /metrics keeps its token.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in PROBE_PATHS and request.method in ("GET", "HEAD"):
            view = healthz if request.path.startswith("/healthz") else metrics
            return view(request)
        return self.get_response(request)


# --- /healthz ---------------------------------------------------------------------------


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    due_since = oldest_due()
    age = (timezone.now() - due_since).total_seconds() if due_since else 0.0
    return {"ok": True, "oldest_due_seconds": round(max(0.0, age), 3)}


def worker_heartbeats() -> list[datetime]:
    """Last heartbeats of the RQ workers listening on the delivery queue (two round trips).

    RQ's own `Worker.all()` costs a round trip per worker; only the heartbeat is needed here.
    A worker whose key expired (RQ's worker_ttl) has no heartbeat and is skipped.
    """
    client = observability.redis_client()
    keys = sorted(client.smembers(worker_registration.WORKERS_BY_QUEUE_KEY % jobs.QUEUE))
    if not keys:
        return []
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "last_heartbeat")
    return [utcparse(beat.decode()) for beat in pipe.execute() if beat]


def check_redis_and_workers() -> tuple[dict[str, Any], dict[str, Any], int]:
    client = observability.redis_client()
    client.ping()
    depth = int(client.llen(jobs.queue().key))
    beats = worker_heartbeats()
    now = timezone.now()
    max_age = settings.HEALTH_WORKER_MAX_AGE_SECONDS
    recent = [b for b in beats if (now - b).total_seconds() <= max_age]
    workers: dict[str, Any] = {"ok": bool(recent), "count": len(recent)}
    if recent:
        workers["last_heartbeat_seconds"] = round((now - max(recent)).total_seconds(), 3)
    else:
        workers["error"] = f"no worker has checked in within {max_age} s"
    return {"ok": True}, workers, depth


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer and a worker checked in recently, else 503.

    No login: a load balancer calls it. Errors are named, not detailed (the details go to
    the log), since anyone can read the answer.
    """
    started = time.monotonic()
    checks: dict[str, dict[str, Any]] = {}
    body: dict[str, Any] = {}
    try:
        database = check_database()
        body["oldest_due_seconds"] = database.pop("oldest_due_seconds")
        checks["database"] = database
    except Exception as exc:
        log.warning("health check: database: %s", exc)
        checks["database"] = {"ok": False, "error": "not answering"}
    try:
        checks["redis"], checks["workers"], body["queue_depth"] = check_redis_and_workers()
    except (RedisError, OSError) as exc:
        log.warning("health check: redis: %s", exc)
        checks["redis"] = {"ok": False, "error": "not answering"}
        checks["workers"] = {"ok": False, "error": "unknown while Redis is down"}
    failed = [name for name, check in checks.items() if not check["ok"]]
    # The root cause only: workers cannot be seen while Redis is down.
    if "redis" in failed:
        failed.remove("workers")
    body = {
        "status": "ok" if not failed else "failing",
        "failed": failed,
        **body,
        "checks": checks,
        "took_ms": round((time.monotonic() - started) * 1000, 1),
    }
    return JsonResponse(body, status=200 if not failed else 503)


# --- /metrics ---------------------------------------------------------------------------

_cache: dict[str, tuple[float, Any]] = {}


def cached(name: str, compute: Callable[[], Any]) -> Any:
    """`compute()`, reused for METRICS_CACHE_SECONDS in this process."""
    now = time.monotonic()
    hit = _cache.get(name)
    if hit is not None and now - hit[0] < settings.METRICS_CACHE_SECONDS:
        return hit[1]
    value = compute()
    _cache[name] = (now, value)
    return value


def deliveries_by_status_and_type() -> list[tuple[str, str, int]]:
    rows = (
        Delivery.objects.order_by()
        .values_list("status", "event__event_type__name")
        .annotate(n=Count("id"))
    )
    return [(status, type_name, n) for status, type_name, n in rows]


class DeliveryCollector(Collector):
    """Everything /metrics shows, read at scrape time from the database and Redis."""

    def collect(self) -> Iterator[Metric]:
        yield from self.database_metrics()
        yield from self.redis_metrics()

    def database_metrics(self) -> Iterator[Metric]:
        by_status = GaugeMetricFamily(
            "webhooks_deliveries",
            "Deliveries stored, by status and event type.",
            labels=["status", "event_type"],
        )
        for status, type_name, n in cached("deliveries", deliveries_by_status_and_type):
            by_status.add_metric([status, type_name], n)
        yield by_status
        yield GaugeMetricFamily(
            "webhooks_deliveries_due",
            "Deliveries due now but not yet sent (the backlog).",
            value=Delivery.objects.due().count(),
        )
        oldest = oldest_due()
        yield GaugeMetricFamily(
            "webhooks_oldest_due_seconds",
            "How long the oldest due delivery has waited.",
            value=max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0,
        )
        disabled = GaugeMetricFamily(
            "webhooks_endpoints_auto_disabled",
            "Endpoints disabled by the platform, by reason.",
            labels=["reason"],
        )
        counts = dict(
            Endpoint.objects.filter(is_enabled=False, disabled_reason__in=AUTO_DISABLED)
            .order_by()
            .values_list("disabled_reason")
            .annotate(n=Count("id"))
        )
        for reason in AUTO_DISABLED:
            disabled.add_metric([reason], counts.get(reason, 0))
        yield disabled

    def redis_metrics(self) -> Iterator[Metric]:
        try:
            attempts, latency = observability.read_counters()
            client = observability.redis_client()
            depth = client.llen(jobs.queue().key)
            workers = len(worker_heartbeats())
        except (RedisError, OSError) as exc:
            log.warning("metrics: redis: %s", exc)
            yield GaugeMetricFamily("webhooks_redis_up", "1 when Redis answers.", value=0)
            return
        yield GaugeMetricFamily("webhooks_redis_up", "1 when Redis answers.", value=1)
        yield GaugeMetricFamily(
            "webhooks_queue_depth",
            "Jobs waiting in the RQ delivery queue.",
            value=depth,
        )
        yield GaugeMetricFamily("webhooks_workers", "RQ workers registered.", value=workers)
        outcomes = CounterMetricFamily(
            "webhooks_attempts",
            "Delivery attempts, by the class of the receiver's status code (none: no answer).",
            labels=["code_class"],
        )
        for code_class in observability.CODE_CLASSES:
            outcomes.add_metric([code_class], attempts.get(code_class, 0))
        yield outcomes
        buckets = []
        cumulative = 0.0
        for le in observability.LATENCY_BUCKETS:
            label = observability.bucket_label(le)
            cumulative += latency.get(label, 0)
            buckets.append((label, cumulative))
        yield HistogramMetricFamily(
            "webhooks_delivery_latency_seconds",
            "From an event's emission to its successful delivery.",
            buckets=buckets,
            sum_value=latency.get("sum", 0.0),
        )


AUTO_DISABLED = (Endpoint.DisabledReason.FAILING, Endpoint.DisabledReason.GONE)

registry = CollectorRegistry(auto_describe=False)
registry.register(DeliveryCollector())


def _token(request: HttpRequest) -> str:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.GET.get("token", "")


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text format, for a holder of METRICS_TOKEN."""
    expected = settings.METRICS_TOKEN
    if not expected:
        return HttpResponse(
            "Metrics are disabled: set METRICS_TOKEN and scrape with "
            "'Authorization: Bearer <token>'.\n",
            status=403,
            content_type="text/plain",
        )
    given = _token(request)
    if not given:
        response = HttpResponse(
            "Authorization: Bearer <METRICS_TOKEN> required.\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return HttpResponse("Wrong token.\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
