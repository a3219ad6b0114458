"""What the delivery engine tells operators: one log line per attempt, and live metrics.

`observe()` is called by the pump each time it records a batch of attempts, so it sits on
the hot path: it costs nothing when attempt logging is off (the default in workers) and one
Redis round trip per batch for the metrics. Counters live in Redis hashes rather than in
each process's memory because a worker's counters would be invisible to the web process
that serves /metrics, and Prometheus handles the reset when Redis restarts.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from django.db.models import Count, Max, Q
from django.utils import timezone

if TYPE_CHECKING:
    from deliveries.results import AttemptResult
    from endpoints.models import Endpoint

attempt_log = logging.getLogger("webhooks.attempts")
log = logging.getLogger(__name__)

ATTEMPTS_KEY = "webhooks:metrics:attempts"
LATENCY_KEY = "webhooks:metrics:latency"
# Emit-to-success latency buckets, in seconds: from a fast receiver (tens of ms) through
# retries (minutes, hours) to the end of the 48-hour retry window.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
    6 * 3600,
    24 * 3600,
    48 * 3600,
    math.inf,
)
CODE_CLASSES = ("2xx", "3xx", "4xx", "5xx", "none")
REDIS_WARNING_EVERY = 60.0  # seconds between "metrics not recorded" warnings

_warned_at = -math.inf
_warn_lock = threading.Lock()


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """A Redis client with short timeouts, for metrics and health checks.

    Not the queue's connection: that one may wait indefinitely on a Redis that hangs, and
    neither a pump nor a load balancer's probe may.
    """
    timeouts = {"socket_timeout": 2, "socket_connect_timeout": 2, "health_check_interval": 30}
    if settings.REDIS_SENTINELS:
        # The same master as the queue's (RQ_QUEUES), found through the sentinels.
        sentinel = redis.Sentinel(
            settings.REDIS_SENTINELS, socket_timeout=2, socket_connect_timeout=2
        )
        return sentinel.master_for(
            settings.REDIS_SENTINEL_MASTER,
            db=settings.REDIS_SENTINEL_DB,
            password=settings.REDIS_PASSWORD,
            **timeouts,
        )
    return redis.Redis.from_url(settings.REDIS_URL, **timeouts)


def code_class(status: int | None) -> str:
    """ "2xx" ... "5xx" for an HTTP status, "none" when nothing usable came back."""
    if status is None or not 100 <= status <= 599:
        return "none"
    return f"{status // 100}xx"


def bucket_label(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(float(le))


def observe(results: Sequence[AttemptResult]) -> None:
    """Log and count a batch of recorded attempts. Never raises.

    Called by `deliveries.engine.recording.record()` after its write, so each delivery's
    status is its new one.

    Args:
        results: the attempts just recorded.
    """
    if not results:
        return
    try:
        if attempt_log.isEnabledFor(logging.INFO):
            for result in results:
                fields = attempt_fields(result)
                attempt_log.info("attempt %s", logfmt(fields), extra={"fields": fields})
        _count(results, time.time())
    except Exception:
        # Observability must never cost a delivery; a bug here is reported, not raised.
        log.exception("could not observe %d attempts", len(results))


def attempt_fields(result: AttemptResult) -> dict[str, Any]:
    """What one attempt's log line says. Ids, codes and timings only: never a URL (it may
    carry a password), a header (signatures) or a body (merchant data)."""
    delivery = result.delivery
    event = delivery.event
    return {
        "merchant": event.merchant.public_id,
        "endpoint": delivery.endpoint.public_id if delivery.endpoint_id else "-",
        "event": event.public_id,
        "type": event.event_type.name,
        "delivery": delivery.public_id,
        "attempt": delivery.attempts,
        "status": result.status if result.status is not None else "-",
        "outcome": delivery.status,
        "duration_ms": result.duration_ms,
        "error": result.error[:200],
    }


def logfmt(fields: dict[str, Any]) -> str:
    """key=value pairs, quoting values with spaces, quotes or equals signs (logfmt)."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if text == "" or any(c in text for c in ' "=\\\n'):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _count(results: Sequence[AttemptResult], now: float) -> None:
    attempts: Counter[str] = Counter()
    latency: Counter[str] = Counter()
    total_seconds = 0.0
    for result in results:
        attempts[code_class(result.status)] += 1
        if result.ok:
            seconds = max(0.0, now - result.delivery.event.created_at.timestamp())
            le = LATENCY_BUCKETS[bisect.bisect_left(LATENCY_BUCKETS, seconds)]
            latency[bucket_label(le)] += 1
            total_seconds += seconds
    try:
        pipe = redis_client().pipeline(transaction=False)
        for field, n in attempts.items():
            pipe.hincrby(ATTEMPTS_KEY, field, n)
        if latency:
            for field, n in latency.items():
                pipe.hincrby(LATENCY_KEY, field, n)
            pipe.hincrby(LATENCY_KEY, "count", sum(latency.values()))
            pipe.hincrbyfloat(LATENCY_KEY, "sum", total_seconds)
        pipe.execute()
    except (redis.RedisError, OSError) as exc:
        _warn_redis(exc)


def _warn_redis(exc: Exception) -> None:
    """Warn that metrics are being lost, at most once a minute: Redis being down is already
    loud elsewhere, and a warning per batch would flood the log."""
    global _warned_at
    with _warn_lock:
        now = time.monotonic()
        if now - _warned_at < REDIS_WARNING_EVERY:
            return
        _warned_at = now
    log.warning("delivery metrics not recorded: Redis is unavailable (%s)", exc)


def read_counters() -> tuple[dict[str, int], dict[str, float]]:
    """The attempt counters and the latency histogram's raw buckets, in one round trip.

    Raises:
        redis.RedisError: Redis did not answer.
    """
    pipe = redis_client().pipeline(transaction=False)
    pipe.hgetall(ATTEMPTS_KEY)
    pipe.hgetall(LATENCY_KEY)
    raw_attempts, raw_latency = pipe.execute()
    attempts = {k.decode(): int(v) for k, v in raw_attempts.items()}
    latency = {k.decode(): float(v) for k, v in raw_latency.items()}
    return attempts, latency


class JsonFormatter(logging.Formatter):
    """One JSON object per line; structured lines (attempts) put their fields at top level."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


# --- the staff's triage page ------------------------------------------------------------


@dataclass
class FailingEndpoint:
    endpoint: Endpoint
    failing: int  # deliveries of the window that failed, or are waiting for a retry
    total: int
    last_status_code: int | None
    last_error: str

    @property
    def failure_rate(self) -> float:
        return 100.0 * self.failing / self.total if self.total else 0.0


def failing_endpoints(
    hours: int = 24, limit: int = 50, now: datetime | None = None
) -> list[FailingEndpoint]:
    """The endpoints with the most failing deliveries among events of the last `hours`.

    Counted from deliveries, not attempts, so endpoints that log no attempts (log mode None)
    show up too. Deliveries have no index on their creation time, but events do, and the
    deliveries of an event are created with it: the window becomes a range of event ids,
    read through the deliveries' event index.
    """
    from deliveries.models import Delivery, Event
    from endpoints.models import Endpoint

    since = (now or timezone.now()) - timedelta(hours=hours)
    first_event = (
        Event.objects.filter(created_at__gte=since)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
        .first()
    )
    if first_event is None:
        return []
    S = Delivery.Status
    failing = Q(status=S.FAILED) | Q(status__in=[S.PENDING, S.CANCELLED], attempts__gt=0)
    rows = list(
        Delivery.objects.filter(event_id__gte=first_event, endpoint__isnull=False)
        .order_by()
        .values("endpoint_id")
        .annotate(total=Count("id"), failing=Count("id", filter=failing))
        .filter(failing__gt=0)
        .order_by("-failing", "endpoint_id")[:limit]
    )
    endpoints = Endpoint.objects.select_related("merchant").in_bulk(
        [r["endpoint_id"] for r in rows]
    )
    last_failures = {
        d["endpoint_id"]: d
        for d in Delivery.objects.filter(
            id__in=Delivery.objects.filter(
                failing, event_id__gte=first_event, endpoint_id__in=endpoints
            )
            .order_by()
            .values("endpoint_id")
            .annotate(last=Max("id"))
            .values("last")
        ).values("endpoint_id", "last_status_code", "last_error")
    }
    return [
        FailingEndpoint(
            endpoint=endpoints[r["endpoint_id"]],
            failing=r["failing"],
            total=r["total"],
            last_status_code=last_failures.get(r["endpoint_id"], {}).get("last_status_code"),
            last_error=last_failures.get(r["endpoint_id"], {}).get("last_error", ""),
        )
        for r in rows
    ]
