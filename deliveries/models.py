"""Events, deliveries and attempts: the database owns delivery state.

A `Delivery` is one event to one endpoint. Workers claim due deliveries with a conditional
UPDATE (so a duplicate job is harmless), send them outside the database, and record the
outcomes of a whole batch with a handful of bulk statements.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from deliveries import http, observability, policy, signing
from endpoints.ids import new_id
from endpoints.models import Endpoint, EventType, Merchant

MAX_LOGGED_BODY = 64 * 1024
MASK = "****"
_MASKED_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie"}


# Deliveries whose destination may be sent to: a one-off URL, or an enabled endpoint.
_TO_ENABLED = Q(endpoint__isnull=True) | Q(endpoint__is_enabled=True)


class UnknownEventType(ValueError):
    pass


def _event_id() -> str:
    return new_id("evt")


def _delivery_id() -> str:
    return new_id("dlv")


class EventQuerySet(models.QuerySet["Event"]):
    def for_merchant(self, merchant: Merchant) -> EventQuerySet:
        return self.filter(merchant=merchant)

    def create_event(
        self, merchant: Merchant, type_name: str, data: Any, *, webhook_url: str | None = None
    ) -> Event:
        """Store one event with the merchant's next sequence number.

        Inside a caller's transaction it joins it (no savepoint: emit's hot path); alone it
        is its own transaction.

        Raises:
            UnknownEventType: when no active type has that name.
        """
        event = Event(
            merchant=merchant,
            event_type=active_event_type(type_name),
            data=data,
            webhook_url=webhook_url or "",
        )
        with transaction.atomic(savepoint=False):
            event.sequence = merchant.next_sequence()
            _insert_event(event)
        return event

    def emit(
        self, merchant: Merchant, type_name: str, data: Any, *, webhook_url: str | None = None
    ) -> Event:
        """Store an event and one delivery per subscribed, enabled endpoint; send after commit.

        The subscribers are read before the write transaction: on SQLite that transaction
        holds the machine-wide write lock that the workers' claims and records also wait for.
        """
        from deliveries import jobs

        subscribers = Endpoint.objects.subscriber_ids(merchant, active_event_type(type_name))
        targets: list[tuple[int | None, str]] = [(pk, "") for pk in subscribers]
        if webhook_url:
            targets.append((None, webhook_url))
        with transaction.atomic():
            event = self.create_event(merchant, type_name, data, webhook_url=webhook_url)
            _insert_deliveries(event, targets)
            if targets:
                transaction.on_commit(jobs.kick)
        return event


def _insert_sql(model: type[models.Model], columns: Sequence[str], returning: str = "") -> str:
    """A prepared INSERT of `columns` into a model's table.

    The engine's hot path inserts with these rather than save() or bulk_create(), whose
    per-row, per-field work cost more than the statements themselves.
    """
    qn = connection.ops.quote_name
    sql = (
        f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    return sql + f" RETURNING {qn(returning)}" if returning else sql


_EVENT_FIELDS = (
    "public_id",
    "merchant",
    "event_type",
    "data",
    "sequence",
    "webhook_url",
    "created_at",
)


def _insert_event(event: Event) -> None:
    fields = [Event._meta.get_field(name) for name in _EVENT_FIELDS]
    values = [f.get_db_prep_save(getattr(event, f.attname), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(Event, [f.column for f in fields], returning="id"), values)
        event.pk = cursor.fetchone()[0]
    event._state.adding = False
    event._state.db = connection.alias


_event_types: dict[str, tuple[float, EventType]] = {}
EVENT_TYPE_TTL = 30.0  # seconds a process trusts its copy of a catalogue entry


def active_event_type(name: str) -> EventType:
    """The catalogue entry for `name`, from a short-lived per-process cache (emit's hot path).

    Raises:
        UnknownEventType: when no active type has that name.
    """
    cached = _event_types.get(name)
    if cached is not None and time.monotonic() - cached[0] < EVENT_TYPE_TTL:
        return cached[1]
    try:
        event_type = EventType.objects.select_related("category").get(name=name, is_active=True)
    except EventType.DoesNotExist:
        _event_types.pop(name, None)
        raise UnknownEventType(f"Unknown event type {name!r}.") from None
    _event_types[name] = (time.monotonic(), event_type)
    return event_type


def _insert_deliveries(event: Event, targets: list[tuple[int | None, str]]) -> None:
    """One prepared INSERT for an event's deliveries: (endpoint id, one-off URL) each.

    bulk_create built a model instance and compiled every field per row, which made it the
    largest part of an emit.
    """
    if not targets:
        return
    ops = connection.ops
    columns = (
        "public_id",
        "merchant_id",
        "event_id",
        "endpoint_id",
        "url",
        "status",
        "attempts",
        "next_attempt_at",
        "claimed_by",
        "last_error",
        "created_at",
    )
    now = ops.adapt_datetimefield_value(event.created_at)
    rows = [
        (
            new_id("dlv"),
            event.merchant_id,
            event.pk,
            endpoint_id,
            url,
            "pending",
            0,
            now,
            "",
            "",
            now,
        )
        for endpoint_id, url in targets
    ]
    with connection.cursor() as cursor:
        cursor.executemany(_insert_sql(Delivery, columns), rows)


class Event(models.Model):
    """Something that happened in the POS system. Immutable once stored."""

    public_id = models.CharField(max_length=40, unique=True, default=_event_id, editable=False)
    # No index of its own: the composite indexes below start with it, and every index is
    # written on each emit.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    event_type = models.ForeignKey(EventType, on_delete=models.PROTECT, related_name="events")
    data = models.JSONField(default=dict, blank=True)
    sequence = models.BigIntegerField(help_text="Per-merchant, increasing; receivers drop stale.")
    webhook_url = models.CharField(max_length=2048, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "sequence"], name="event_sequence_unique")
        ]
        indexes = [
            models.Index(fields=["merchant", "-id"], name="event_merchant_recent"),
            models.Index(fields=["merchant", "event_type", "-id"], name="event_merchant_type"),
            models.Index(fields=["created_at"], name="event_created"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.type}"

    @property
    def type(self) -> str:
        return self.event_type.name

    def envelope(self, *, thin: bool = False, style: str = "") -> dict[str, Any]:
        """The body receivers get: the brief's envelope; thin payloads omit `data`.

        The flat style is SalesPlay's shape: `merchant_id`, `type` and `created_at`
        ("2025-06-30 12:54:31", UTC), then the data's own keys at the top level.
        """
        style = style or ("thin" if thin else "full")
        if style == "flat":
            return self._flat_envelope()
        body: dict[str, Any] = {
            "id": self.public_id,
            "type": self.event_type.name,
            "created_at": self.created_at.astimezone(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "merchant_id": self.merchant.public_id,
            "sequence": self.sequence,
        }
        if style != "thin":
            body["data"] = self.data
        return body

    def _flat_envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "merchant_id": self.merchant.public_id,
            "type": self.event_type.name,
            "created_at": self.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        }
        if isinstance(self.data, dict):
            # The envelope's keys win, so data can never pose as another merchant or type.
            body.update((k, v) for k, v in self.data.items() if k not in body)
        else:
            body["data"] = self.data
        return body

    def body(self, *, thin: bool = False, style: str = "") -> bytes:
        """The exact bytes receivers get; cached, since every endpoint gets the same ones."""
        style = style or ("thin" if thin else "full")
        cache = self.__dict__.setdefault("_bodies", {})
        if style not in cache:
            cache[style] = json.dumps(self.envelope(style=style), separators=(",", ":")).encode()
        return cache[style]

    def resend(self) -> int:
        """Send this event again to every endpoint it went to, as new attempts.

        Returns:
            How many deliveries were scheduled.
        """
        return Delivery.objects.retry_now(self.deliveries.all(), include_succeeded=True)


class DeliveryQuerySet(models.QuerySet["Delivery"]):
    def for_merchant(self, merchant: Merchant) -> DeliveryQuerySet:
        return self.filter(merchant=merchant)

    def due(self, now: datetime | None = None) -> DeliveryQuerySet:
        return self.filter(
            status=Delivery.Status.PENDING, next_attempt_at__lte=now or timezone.now()
        )

    def claim(
        self,
        token: str,
        limit: int,
        *,
        busy: dict[int, int] | None = None,
        full: Iterable[int] = (),
        ids: Sequence[int] | None = None,
        prefetch: int = 1,
        cache: ClaimCache | None = None,
    ) -> list[Delivery]:
        """Claim up to `limit` due deliveries for one worker, atomically.

        A candidate query picks due rows (skipping endpoints already at their in-flight cap),
        then one conditional UPDATE takes those still pending: a row another worker took in
        between is simply not ours, so a duplicate job never sends twice.

        Args:
            token: this worker's claim token, written to `claimed_by`.
            limit: how many deliveries the caller can send right now.
            busy: in-flight requests per endpoint id in this worker.
            full: endpoints already at their in-flight cap in this worker.
            prefetch: claim up to this many times an endpoint's cap (the rest wait locally).
            cache: a worker's cache of events and endpoints shared by many deliveries.
            ids: claim exactly these deliveries if due (manual "send now").

        Returns:
            The claimed deliveries with event, merchant and endpoint loaded.
        """
        if limit <= 0:
            return []
        busy = busy or {}
        now = timezone.now()
        candidates = self.due(now)
        if ids is not None:
            candidates = Delivery.objects.filter(pk__in=ids, status=Delivery.Status.PENDING)
        # A webhook disabled after its delivery was scheduled (a resend, a race) gets nothing.
        candidates = candidates.filter(_TO_ENABLED)
        full = list(full)
        if full:
            candidates = candidates.exclude(endpoint_id__in=full)
        if connection.features.has_select_for_update_skip_locked:
            # PostgreSQL: workers skip each other's candidate rows instead of racing for them.
            with transaction.atomic():
                chosen = self._pick(
                    candidates.select_for_update(skip_locked=True, of=("self",)),
                    limit,
                    busy,
                    prefetch,
                )
                self._mark(token, chosen, now, due=ids is None)
        else:
            # SQLite: readers never wait, but a write transaction holds the one machine-wide
            # write lock (webhooks_project/sqlite), so pick outside it and keep only the
            # conditional UPDATE inside. A row another worker took meanwhile is not ours.
            chosen = self._pick(candidates, limit, busy, prefetch)
            if chosen:
                with transaction.atomic():
                    self._mark(token, chosen, now, due=ids is None)
        if not chosen:
            return []
        return (cache or ClaimCache()).load([pk for pk, _ in chosen], token)

    def _pick(
        self,
        candidates: DeliveryQuerySet,
        limit: int,
        busy: dict[int, int],
        prefetch: int,
    ) -> list[tuple[int, float]]:
        """Due rows within the per-endpoint caps: (id, the endpoint's timeout) each."""
        rows = list(
            candidates.order_by("next_attempt_at", "id").values_list(
                "id", "endpoint_id", "endpoint__timeout_seconds", "endpoint__max_in_flight"
            )[: limit * 4]
        )
        chosen: list[tuple[int, float]] = []
        taken: dict[int, int] = {}
        for pk, endpoint_id, timeout, max_in_flight in rows:
            if endpoint_id is not None:
                allowed = max_in_flight * prefetch - busy.get(endpoint_id, 0)
                if taken.get(endpoint_id, 0) >= allowed:
                    continue
                taken[endpoint_id] = taken.get(endpoint_id, 0) + 1
            chosen.append((pk, timeout or http.MAX_TIMEOUT))
            if len(chosen) >= limit:
                break
        return chosen

    def _mark(
        self, token: str, chosen: list[tuple[int, float]], now: datetime, *, due: bool
    ) -> None:
        """Make the chosen rows ours if they are still pending (and still due)."""
        if not chosen:
            return
        # The lease outlives the slowest request of the batch, so a live worker is never
        # mistaken for a dead one; a dead worker's claims come back after it expires.
        longest = max(timeout for _, timeout in chosen)
        lease = timedelta(seconds=longest + settings.WEBHOOK_LEASE_MARGIN_SECONDS)
        still = Delivery.objects.filter(
            pk__in=[pk for pk, _ in chosen], status=Delivery.Status.PENDING
        )
        if due:
            # Taken, tried and rescheduled by another worker since we looked: not due now.
            still = still.filter(next_attempt_at__lte=now)
        still.update(
            status=Delivery.Status.DELIVERING,
            claimed_by=token,
            claimed_until=now + lease,
            attempts=models.F("attempts") + 1,
            last_attempt_at=now,
        )

    def release(self, token: str, ids: Sequence[int]) -> int:
        """Give back claims that were never attempted: due again at once, attempt uncounted."""
        return Delivery.objects.filter(pk__in=ids, claimed_by=token).update(
            status=Delivery.Status.PENDING,
            claimed_by="",
            claimed_until=None,
            attempts=models.F("attempts") - 1,
        )

    def release_expired(self, now: datetime | None = None) -> int:
        """Give back the claims of workers that died mid-batch (their lease ran out)."""
        now = now or timezone.now()
        return self.filter(status=Delivery.Status.DELIVERING, claimed_until__lt=now).update(
            status=Delivery.Status.PENDING, next_attempt_at=now, claimed_by="", claimed_until=None
        )

    def retry_now(self, qs: DeliveryQuerySet, *, include_succeeded: bool = False) -> int:
        """Make deliveries due now again (manual retry, recover, resend).

        A manual retry is one more attempt: the attempt count and the retry window are
        kept, so a delivery that already exhausted its policy is not retried for 48 hours more.
        """
        from deliveries import jobs

        statuses = [Delivery.Status.FAILED, Delivery.Status.CANCELLED]
        if include_succeeded:
            statuses.append(Delivery.Status.SUCCEEDED)
        now = timezone.now()
        with transaction.atomic():
            count = qs.filter(_TO_ENABLED, status__in=statuses).update(
                status=Delivery.Status.PENDING,
                next_attempt_at=now,
                completed_at=None,
            )
            if count:
                transaction.on_commit(jobs.kick)
        return count

    def record(self, token: str, results: Iterable[AttemptResult]) -> None:
        """Store the outcomes of a batch of attempts with a few bulk statements.

        Args:
            token: the claim token the deliveries were claimed with; a delivery whose claim
                was released and taken by another worker meanwhile is left to that worker.
            results: what happened to each delivery.
        """
        results = list(results)
        if not results:
            return
        now = timezone.now()
        attempts: list[DeliveryAttempt] = []
        succeeded: set[int] = set()
        failed: set[int] = set()
        gone: dict[int, Endpoint] = {}
        for result in results:
            delivery = result.delivery
            delivery.apply(result, now)
            if delivery.should_log(result):
                attempts.append(delivery.attempt_row(result))
            if delivery.endpoint_id is None:
                continue
            if result.ok:
                succeeded.add(delivery.endpoint_id)
            else:
                failed.add(delivery.endpoint_id)
                if result.status == 410:
                    gone[delivery.endpoint_id] = delivery.endpoint
        with transaction.atomic():
            _write_outcomes(token, [r.delivery for r in results])
            _insert_attempts(attempts)
            if succeeded:
                Endpoint.objects.filter(pk__in=succeeded, failing_since__isnull=False).update(
                    failing_since=None, failure_warning_sent_at=None
                )
            still_failing = failed - succeeded
            if still_failing:
                Endpoint.objects.filter(pk__in=still_failing, failing_since__isnull=True).update(
                    failing_since=now
                )
        observability.observe(results)
        for endpoint in gone.values():
            endpoint.auto_disable(Endpoint.DisabledReason.GONE, "The receiver answered 410 Gone.")
        if still_failing - set(gone):
            Endpoint.objects.check_failing(still_failing - set(gone), now)


class ClaimCache:
    """Events and endpoints for claimed deliveries, loaded once and shared.

    Ten deliveries of one event share one Event object (and its encoded body), and a worker
    reloads an endpoint at most every few seconds, so a claim costs one narrow query for the
    deliveries instead of building four model instances per row.
    """

    ENDPOINT_TTL = 5.0  # seconds: how soon a worker sees a rotated secret or a new timeout
    MAX_EVENTS = 500  # about two claims' worth: more only held memory (the benchmark's RSS grew)

    def __init__(self) -> None:
        self.events: dict[int, Event] = {}
        self.endpoints: dict[int, Endpoint] = {}
        self.endpoints_loaded_at = time.monotonic()

    def load(self, ids: Sequence[int], token: str) -> list[Delivery]:
        rows = list(
            Delivery.objects.filter(
                pk__in=ids, status=Delivery.Status.DELIVERING, claimed_by=token
            ).values_list(*_CLAIM_FIELDS)
        )
        self._load_events({row[2] for row in rows})
        self._load_endpoints({row[3] for row in rows if row[3] is not None})
        deliveries = []
        for row in rows:
            delivery = Delivery(**dict(zip(_CLAIM_FIELDS, row, strict=True)))
            delivery.status = Delivery.Status.DELIVERING
            delivery.claimed_by = token
            delivery.event = self.events[delivery.event_id]
            if delivery.endpoint_id is not None:
                delivery.endpoint = self.endpoints[delivery.endpoint_id]
            deliveries.append(delivery)
        return deliveries

    def _load_events(self, ids: set[int]) -> None:
        missing = ids - self.events.keys()
        if not missing:
            return
        if len(self.events) + len(missing) > self.MAX_EVENTS:
            # Keep the ones this claim uses: clearing them too lost an event mid-claim.
            self.events = {pk: self.events[pk] for pk in ids if pk in self.events}
        for event in Event.objects.filter(pk__in=missing).select_related("event_type", "merchant"):
            self.events[event.pk] = event

    def _load_endpoints(self, ids: set[int]) -> None:
        if time.monotonic() - self.endpoints_loaded_at > self.ENDPOINT_TTL:
            self.endpoints.clear()
            self.endpoints_loaded_at = time.monotonic()
        missing = ids - self.endpoints.keys()
        if missing:
            self.endpoints.update(Endpoint.objects.in_bulk(missing))


_CLAIM_FIELDS = (
    "id",
    "public_id",
    "event_id",
    "endpoint_id",
    "merchant_id",
    "url",
    "attempts",
    "created_at",
    "last_attempt_at",
)


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERING = "delivering", "Delivering"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    public_id = models.CharField(max_length=40, unique=True, default=_delivery_id, editable=False)
    # merchant and endpoint have no index of their own: the composite indexes below start
    # with them, and each index costs every insert and status change.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    # Null for a one-off `webhook_url` delivery, which has `url` instead.
    endpoint = models.ForeignKey(
        Endpoint,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,
    )
    url = models.CharField(max_length=2048, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=40, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            # The claim query and the sweep: due rows in order.
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due",
                condition=Q(status="pending"),
            ),
            models.Index(
                fields=["claimed_until"], name="delivery_leased", condition=Q(status="delivering")
            ),
            # The webhook detail page: keyset pagination, filters, the 24-hour chart.
            models.Index(fields=["endpoint", "-id"], name="delivery_endpoint_recent"),
            models.Index(fields=["endpoint", "status", "-id"], name="delivery_endpoint_status"),
            models.Index(fields=["endpoint", "created_at"], name="delivery_endpoint_created"),
            models.Index(fields=["merchant", "status", "-id"], name="delivery_merchant_status"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def target_url(self) -> str:
        return self.endpoint.url if self.endpoint_id else self.url

    @property
    def log_mode(self) -> str:
        return self.endpoint.log_mode if self.endpoint_id else Endpoint.LogMode.FULL

    def retry_policy(self) -> policy.Policy:
        if self.endpoint_id is None:
            return policy.Policy("exponential")
        e = self.endpoint
        return policy.Policy(e.retry_policy, e.fixed_retries, e.fixed_cooldown_seconds)

    # --- one attempt ------------------------------------------------------------------

    def build_request(self, now: int | None = None) -> tuple[bytes, dict[str, str]]:
        """The exact body and headers of the next attempt, signed for this moment."""
        if self.endpoint_id:
            style = self.endpoint.payload_style
            secrets_ = self.endpoint.signing_secrets()
        else:
            style, secrets_ = Endpoint.PayloadStyle.FULL, [self.merchant_secret()]
        body = self.event.body(style=style)
        timestamp = now or int(time.time())
        headers = {"content-type": "application/json"}
        headers.update(
            signing.headers(
                [signing.secret_key(s) for s in secrets_], self.event.public_id, timestamp, body
            )
        )
        return body, headers

    def merchant_secret(self) -> str:
        return self.event.merchant.webhook_secret

    def attempt(self) -> AttemptResult:
        """Send this delivery once. Touches no database, so worker threads may call it."""
        body, headers = self.build_request()
        timeout = float(self.endpoint.timeout_seconds if self.endpoint_id else http.MAX_TIMEOUT)
        started = time.monotonic()
        result = AttemptResult(delivery=self, request_body=body, request_headers=headers)
        try:
            response = http.post(self.target_url, body, headers, timeout=timeout)
        except http.TransportError as exc:
            result.status = exc.status
            result.error = exc.message
            result.permanent = exc.permanent
        else:
            result.status = response.status
            result.response_headers = {k.lower(): v for k, v in response.headers.items()}
            result.response_body = response.body
            result.truncated = response.truncated
            if not policy.is_success(response.status):
                result.error = f"HTTP {response.status}"
        result.duration_ms = int((time.monotonic() - started) * 1000)
        return result

    def apply(self, result: AttemptResult, now: datetime) -> None:
        """Move this delivery to its next state after an attempt (in memory)."""
        self.last_status_code = result.status
        self.last_error = result.error[:500]
        self.last_duration_ms = result.duration_ms
        self.claimed_by = ""
        self.claimed_until = None
        if result.ok:
            self.status, self.next_attempt_at, self.completed_at = self.Status.SUCCEEDED, None, now
            return
        next_at = None
        if policy.is_retryable(result.status) and not result.permanent:
            retry_after = None
            if result.status in (429, 503):
                retry_after = policy.parse_retry_after(
                    result.response_headers.get("retry-after"), now
                )
            next_at = self.retry_policy().next_attempt_at(
                self.attempts, self.created_at, now, retry_after
            )
        if next_at is None:
            self.status, self.next_attempt_at, self.completed_at = self.Status.FAILED, None, now
        else:
            self.status, self.next_attempt_at = self.Status.PENDING, next_at

    def should_log(self, result: AttemptResult) -> bool:
        mode = self.log_mode
        return mode == Endpoint.LogMode.FULL or (mode == Endpoint.LogMode.ERROR and not result.ok)

    def attempt_row(self, result: AttemptResult) -> DeliveryAttempt:
        return DeliveryAttempt(
            delivery=self,
            number=self.attempts,
            url=http.mask_url(self.target_url),
            request_headers=mask_headers(result.request_headers),
            request_body=_text(result.request_body),
            response_status=result.status,
            response_headers=mask_headers(result.response_headers),
            response_body=_text(result.response_body),
            response_truncated=result.truncated,
            duration_ms=result.duration_ms,
            error=result.error[:500],
            succeeded=result.ok,
        )

    def send_now(self) -> AttemptResult | None:
        """Claim, send and record this delivery in the calling thread (tests, "Send test").

        Returns:
            What happened, or None when the delivery was not due or was taken by a worker.
        """
        token = uuid.uuid4().hex
        claimed = Delivery.objects.claim(token, 1, ids=[self.pk])
        if not claimed:
            return None
        result = claimed[0].attempt()
        Delivery.objects.record(token, [result])
        self.refresh_from_db()
        return result


def _write_outcomes(token: str, deliveries: list[Delivery]) -> None:
    """One prepared UPDATE executed for every row (executemany).

    Django's bulk_update builds a CASE expression per field and row, which cost more CPU than
    the HTTP requests themselves (profiled: two thirds of a worker's main thread). The claim
    token in the WHERE clause leaves a row alone if its lease expired and another worker
    took it meanwhile.
    """
    ops = connection.ops
    qn = ops.quote_name
    sql = (
        f"UPDATE {qn(Delivery._meta.db_table)} SET {qn('status')} = %s, "
        f"{qn('next_attempt_at')} = %s, {qn('claimed_by')} = '', {qn('claimed_until')} = NULL, "
        f"{qn('last_status_code')} = %s, {qn('last_error')} = %s, {qn('last_duration_ms')} = %s, "
        f"{qn('completed_at')} = %s WHERE {qn('id')} = %s AND {qn('claimed_by')} = %s"
    )
    rows = [
        (
            d.status,
            ops.adapt_datetimefield_value(d.next_attempt_at),
            d.last_status_code,
            d.last_error,
            d.last_duration_ms,
            ops.adapt_datetimefield_value(d.completed_at),
            d.pk,
            token,
        )
        for d in deliveries
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


ATTEMPT_COLUMNS = (
    "delivery_id",
    "number",
    "created_at",
    "url",
    "request_headers",
    "request_body",
    "response_status",
    "response_headers",
    "response_body",
    "response_truncated",
    "duration_ms",
    "error",
    "succeeded",
)


def _insert_attempts(attempts: list[DeliveryAttempt]) -> None:
    """One prepared INSERT for every attempt row (bulk_create's per-field work cost more)."""
    if not attempts:
        return
    ops = connection.ops
    meta = DeliveryAttempt._meta
    json_fields = [meta.get_field("request_headers"), meta.get_field("response_headers")]
    rows = [
        (
            a.delivery_id,
            a.number,
            ops.adapt_datetimefield_value(a.created_at),
            a.url,
            json_fields[0].get_db_prep_save(a.request_headers, connection),
            a.request_body,
            a.response_status,
            json_fields[1].get_db_prep_save(a.response_headers, connection),
            a.response_body,
            a.response_truncated,
            a.duration_ms,
            a.error,
            a.succeeded,
        )
        for a in attempts
    ]
    with connection.cursor() as cursor:
        cursor.executemany(_insert_sql(DeliveryAttempt, ATTEMPT_COLUMNS), rows)


@dataclass
class AttemptResult:
    delivery: Delivery
    request_body: bytes
    request_headers: dict[str, str]
    status: int | None = None
    error: str = ""
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    truncated: bool = False
    duration_ms: int = 0
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return policy.is_success(self.status)


class DeliveryAttempt(models.Model):
    """The log of one try, written according to the endpoint's log mode."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    url = models.CharField(max_length=2048)
    request_headers = models.JSONField(default=dict)
    request_body = models.TextField(blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict)
    response_body = models.TextField(blank=True)
    response_truncated = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["created_at"], name="attempt_created")]

    def __str__(self) -> str:
        return f"{self.delivery} #{self.number}"


def mask_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: (MASK if k.lower() in _MASKED_HEADERS else v) for k, v in headers.items()}


def _text(body: bytes) -> str:
    return body[:MAX_LOGGED_BODY].decode("utf-8", errors="replace")
