"""Events, deliveries and attempts: the database owns delivery state.

A `Delivery` is one event to one endpoint. Workers claim due deliveries with a conditional
UPDATE (so a duplicate job is harmless), send them outside the database, and record the
outcomes of a whole batch with a handful of bulk statements.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Merchant
from catalogue.models import EventType
from deliveries.results import AttemptResult
from deliveries.sql import insert_sql
from endpoints.models import Endpoint
from lib import http, policy, signing, text
from lib.crypto import CredentialURLField
from lib.event_data import check_event_data
from lib.ids import new_id
from lib.masking import mask_headers, storable_text

MAX_LOGGED_BODY = 64 * 1024
# Places of ordered deliveries are their events' sequence numbers times this: room for that
# many manual retries put at the back between two events.
PLACE_STEP = 1000


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
            InvalidEventData: when a string or key in `data` holds U+0000 or a lone surrogate.
        """
        check_event_data(data)
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
        cursor.execute(insert_sql(Event, [f.column for f in fields], returning="id"), values)
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
    webhook_url = CredentialURLField(max_length=2048, blank=True)
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


class DeliveryQuerySet(models.QuerySet["Delivery"]):
    def for_merchant(self, merchant: Merchant) -> DeliveryQuerySet:
        return self.filter(merchant=merchant)

    def due(self, now: datetime | None = None) -> DeliveryQuerySet:
        """Pending and due, to a one-off URL or an enabled endpoint whose breaker is not open."""
        now = now or timezone.now()
        parked = Q(endpoint__breaker_state=Endpoint.BreakerState.OPEN) & Q(
            endpoint__breaker_probe_at__gt=now
        )
        return self.filter(
            _TO_ENABLED, status=Delivery.Status.PENDING, next_attempt_at__lte=now
        ).exclude(parked)

    def waiting_for_ids(self, deliveries: list[Delivery]) -> dict[int, str]:
        """Ordered delivery, for a page of deliveries at once: the public id of the delivery
        each one waits for (what `Delivery.waiting_for` finds), for those that wait.

        One query however long the page (none when no delivery of it is ordered and pending),
        so a list never asks once per row.
        """
        ids = [
            d.pk
            for d in deliveries
            if d.status == Delivery.Status.PENDING
            and d.ordering_value is not None
            and d.place is not None
            and d.endpoint_id is not None
        ]
        if not ids:
            return {}
        place, own = models.OuterRef("place"), models.OuterRef("pk")
        before = (
            Delivery.objects.filter(
                Q(place__lt=place) | Q(place=place, pk__lt=own),
                endpoint_id=models.OuterRef("endpoint_id"),
                ordering_value=models.OuterRef("ordering_value"),
                status__in=[Delivery.Status.PENDING, Delivery.Status.DELIVERING],
            )
            .order_by("-place", "-pk")
            .values("public_id")[:1]
        )
        rows = (
            Delivery.objects.filter(pk__in=ids)
            .annotate(waits_for=models.Subquery(before))
            .values_list("pk", "waits_for")
        )
        return {pk: public_id for pk, public_id in rows if public_id}


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERING = "delivering", "Delivering"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class State(models.TextChoices):
        """One name per state on every page and in the admin (`deliveries.states`); not stored."""

        WAITING = "waiting", "Waiting"
        RETRYING = "retrying", "Retrying"
        HELD = "held", "Held"
        SENDING = "sending", "Sending"
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
    url = CredentialURLField(max_length=2048, blank=True)
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
    # Set by a manual retry, resend or recover; its next attempt is logged as manual.
    manual_retry = models.BooleanField(default=False, db_default=False)
    # Ordered delivery (lib/ordering.py, deliveries/engine/sequencing.py): the value of its
    # endpoint's ordering key in the event's data (null: not ordered), and its place among
    # the deliveries of that value: its event's sequence number times PLACE_STEP, or, once a
    # manual retry put it at the back, one more than the last place of its value. It goes once
    # no delivery of the same value before it is pending or being sent.
    # Null, not "", for "not ordered": the partial index leaves those rows out.
    ordering_value = models.CharField(  # noqa: DJ001
        max_length=240, null=True, blank=True, editable=False
    )
    place = models.BigIntegerField(null=True, blank=True, editable=False)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            # Claims: the endpoints with due work (a skip scan) and each one's oldest rows.
            models.Index(
                fields=["endpoint", "next_attempt_at"],
                name="delivery_endpoint_due",
                condition=Q(status="pending"),
            ),
            # What each endpoint has in flight (a scan counts it for every endpoint with work),
            # and leases that ran out. Led by the endpoint: with `claimed_until` alone,
            # statistics taken while little was in flight had PostgreSQL read every row in
            # flight for every endpoint (a scan of 10,000 endpoints took up to 5.5 s).
            models.Index(
                fields=["endpoint", "claimed_until"],
                name="delivery_endpoint_leased",
                condition=Q(status="delivering"),
            ),
            # The webhook detail page: keyset pagination, filters, the 24-hour chart.
            models.Index(fields=["endpoint", "-id"], name="delivery_endpoint_recent"),
            models.Index(fields=["endpoint", "status", "-id"], name="delivery_endpoint_status"),
            models.Index(fields=["endpoint", "created_at"], name="delivery_endpoint_created"),
            models.Index(fields=["merchant", "status", "-id"], name="delivery_merchant_status"),
            # Ordered delivery: what is still unfinished before a delivery, of its value.
            models.Index(
                fields=["endpoint", "ordering_value", "place"],
                name="delivery_ordered_unfinished",
                condition=Q(status__in=["pending", "delivering"], ordering_value__isnull=False),
            ),
            # The dashboard's failed-attempt count: succeeded deliveries that needed retries.
            models.Index(
                fields=["endpoint", "id"],
                name="delivery_endpoint_retried",
                condition=Q(attempts__gt=1),
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def target_url(self) -> str:
        return self.endpoint.url if self.endpoint_id else self.url

    @property
    def state(self) -> str:
        """Status as shown (`Delivery.State`); reads the endpoint when pending."""
        if self.status == self.Status.PENDING:
            if self.endpoint_id is not None and self.endpoint.is_paused:
                return self.State.HELD
            return self.State.RETRYING if self.attempts else self.State.WAITING
        if self.status == self.Status.DELIVERING:
            return self.State.SENDING
        return self.status

    @property
    def state_label(self) -> str:
        return self.State(self.state).label

    @property
    def no_answer(self) -> str:
        """ "no answer in 30 s" for a timeout (recorded as 408), "" when the receiver answered."""
        return text.no_answer(self.last_status_code, self.last_error) if self.attempts else ""

    def waiting_for(self) -> Delivery | None:
        """Ordered delivery: the unfinished delivery of the same value just before this one
        (it goes once that one has succeeded or failed for good), or None."""
        if (
            self.ordering_value is None
            or self.place is None
            or self.endpoint_id is None
            or self.status != self.Status.PENDING
        ):
            return None
        before = Q(place__lt=self.place) | Q(place=self.place, pk__lt=self.pk)
        return (
            Delivery.objects.filter(
                before,
                endpoint_id=self.endpoint_id,
                ordering_value=self.ordering_value,
                status__in=[self.Status.PENDING, self.Status.DELIVERING],
            )
            .order_by("-place", "-pk")
            .first()
        )

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
        # The webhook's custom headers first: their names never collide with ours (they are
        # refused on save), and what follows would win if a stored one ever did.
        headers = dict(self.endpoint.headers) if self.endpoint_id else {}
        headers["content-type"] = "application/json"
        headers.update(
            signing.headers(
                [signing.secret_key(s) for s in secrets_], self.event.public_id, timestamp, body
            )
        )
        return body, headers

    def merchant_secret(self) -> str:
        return self.event.merchant.webhook_secret

    def move_to_next_state(self, result: AttemptResult, now: datetime) -> None:
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
            request_headers=mask_headers(
                result.request_headers,
                # Custom headers usually carry a credential of the receiver's: never logged.
                self.endpoint.headers if self.endpoint_id else None,
            ),
            request_body=storable_text(result.request_body, MAX_LOGGED_BODY),
            response_status=result.status,
            response_headers=mask_headers(result.response_headers),
            response_body=storable_text(result.response_body, MAX_LOGGED_BODY),
            response_truncated=result.truncated,
            duration_ms=result.duration_ms,
            error=result.error[:500],
            succeeded=result.ok,
            manual=self.manual_retry,
        )


# The attempt log columns the engine writes, in order (the API lists them too).
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
    "manual",
)


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
    manual = models.BooleanField(
        default=False, db_default=False, help_text="Made by a manual retry, not the schedule."
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["created_at"], name="attempt_created")]

    def __str__(self) -> str:
        return f"{self.delivery} #{self.number}"

    @property
    def no_answer(self) -> str:
        """ "no answer in 30 s" for a timeout (logged as 408), "" when the receiver answered."""
        return text.no_answer(self.response_status, self.error)


class IdempotencyKey(models.Model):
    """An `Idempotency-Key` a merchant sent with an event, kept 24 hours.

    A POS that retries after a network error gets the event this key created instead of a
    second one. The unique constraint is what makes it race-safe: of two requests with one
    key, the second insert fails and that request answers with the first one's event.
    """

    TTL_SECONDS = 24 * 3600

    # No index of its own: the unique constraint starts with it.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="idempotency_keys", db_index=False
    )
    key = models.CharField(max_length=255)
    # SHA-256 (hex) of the canonical request: the same key with another body is a 409.
    fingerprint = models.CharField(max_length=64)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "key"], name="idempotency_key_unique")
        ]
        # The retention job deletes expired keys by age.
        indexes = [models.Index(fields=["created_at"], name="idempotency_key_created")]

    def __str__(self) -> str:
        return f"{self.key} -> {self.event_id}"
