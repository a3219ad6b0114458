"""Webhook endpoints: where a merchant's events go, and how they are sent there."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models
from django.utils import timezone

from accounts.models import Merchant
from catalogue.models import Category, EventType
from lib import filters, ordering, signing
from lib.crypto import CredentialURLField, EncryptedTextField
from lib.ids import new_id

SECRET_OVERLAP = timedelta(hours=24)
MAX_RATE_LIMIT = 1000  # deliveries per second one webhook may be given


def validate_ordering_key(value: str | None) -> None:
    try:
        ordering.clean_key(value)
    except ordering.OrderingKeyError as exc:
        raise ValidationError(str(exc)) from exc


def _endpoint_id() -> str:
    return new_id("ep")


class EndpointQuerySet(models.QuerySet["Endpoint"]):
    def for_merchant(self, merchant: Merchant) -> EndpointQuerySet:
        return self.filter(merchant=merchant)

    def subscriber_ids(self, merchant: Merchant, event_type: EventType) -> list[int]:
        """Ids of the merchant's enabled endpoints that get a type, in id order.

        An endpoint subscribed to no type gets every type (Svix's convention, and what a
        myPOS integrator who creates a webhook with only `payload_url` expects).

        Emit's hot path: one plain query, as building it with the ORM cost as much as the
        rest of an emit's reads.
        """
        qn = connection.ops.quote_name
        link = Endpoint.event_types.through._meta
        link_table = qn(link.db_table)
        link_endpoint = qn(link.get_field("endpoint").column)
        sql = (
            f"SELECT e.id FROM {qn(Endpoint._meta.db_table)} e "
            f"WHERE e.merchant_id = %s AND e.is_enabled AND ("
            f"EXISTS (SELECT 1 FROM {link_table} s WHERE s.{link_endpoint} = e.id "
            f"AND s.{qn(link.get_field('eventtype').column)} = %s) "
            f"OR NOT EXISTS (SELECT 1 FROM {link_table} a WHERE a.{link_endpoint} = e.id)"
            f") ORDER BY e.id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [merchant.pk, event_type.pk])
            return [row[0] for row in cursor.fetchall()]


class Endpoint(models.Model):
    class DisabledReason(models.TextChoices):
        NONE = "", "Enabled"
        MERCHANT = "merchant", "Disabled by the merchant"
        STAFF = "staff", "Disabled by staff"
        FAILING = "failing", "Auto-disabled: failing continuously"
        GONE = "gone", "Auto-disabled: the receiver answered 410 Gone"

    class LogMode(models.TextChoices):
        FULL = "full", "Full"
        ERROR = "error", "Error"
        NONE = "none", "None"

    class RetryPolicy(models.TextChoices):
        EXPONENTIAL = "exponential", "Exponential"
        FIXED = "fixed", "Fixed"

    class BreakerState(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"

    class PayloadStyle(models.TextChoices):
        FULL = "full", "Full"
        THIN = "thin", "Thin"
        FLAT = "flat", "Flat"

    public_id = models.CharField(max_length=40, unique=True, default=_endpoint_id, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="endpoints")
    url = CredentialURLField("Webhook URL", max_length=2048)
    description = models.CharField(max_length=500, blank=True)
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="endpoints"
    )
    event_types = models.ManyToManyField(EventType, related_name="endpoints", blank=True)
    secret = EncryptedTextField(default=signing.new_secret)
    previous_secret = EncryptedTextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)

    is_enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(
        max_length=20, choices=DisabledReason.choices, blank=True, default=""
    )
    disabled_detail = models.CharField(max_length=500, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Set on the first failure after a success; the auto-disable clock.
    failing_since = models.DateTimeField(null=True, blank=True)
    failure_warning_sent_at = models.DateTimeField(null=True, blank=True)

    log_mode = models.CharField(max_length=10, choices=LogMode.choices, default=LogMode.FULL)
    payload_style = models.CharField(
        max_length=10, choices=PayloadStyle.choices, default=PayloadStyle.FULL
    )
    retry_policy = models.CharField(
        max_length=20, choices=RetryPolicy.choices, default=RetryPolicy.EXPONENTIAL
    )
    fixed_retries = models.PositiveIntegerField(
        default=1, validators=[MaxValueValidator(50)], help_text="Fixed policy: retries."
    )
    fixed_cooldown_seconds = models.PositiveIntegerField(
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(86400)],
        help_text="Fixed policy: seconds between retries.",
    )
    timeout_seconds = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(30)]
    )
    max_in_flight = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Requests sent to this endpoint at once, at most.",
    )

    # Delivery controls. `filter`: Convoy's syntax on the event's data (lib/filters.py);
    # events that do not match get no delivery to this endpoint. `custom_headers`: a JSON
    # object of name -> value sent with every delivery, encrypted like the signing secret
    # because it usually holds a credential of the receiver's (lib/custom_headers.py).
    filter = models.JSONField(
        null=True,
        blank=True,
        help_text="Only events whose data match this filter are delivered (Convoy's syntax).",
    )
    custom_headers = EncryptedTextField(blank=True, default="")
    # `rate_limit`: deliveries per second at most, across every worker (the claims keep to it,
    # deliveries/engine/pacing.py); `rate_next_at` is when the next one may go, by the
    # database's clock. `ordering_key`: a dotted path of the event's data; deliveries with the
    # same value go one at a time, in the order the events came (lib/ordering.py).
    rate_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RATE_LIMIT)],
        help_text="Deliveries per second to this webhook, at most; empty: no limit.",
    )
    rate_next_at = models.DateTimeField(null=True, blank=True, editable=False)
    ordering_key = models.CharField(
        max_length=200,
        blank=True,
        default="",
        validators=[validate_ordering_key],
        help_text="A field of the event's data (dotted path): deliveries with the same value "
        "go one at a time, in order.",
    )

    # The circuit breaker (see deliveries/engine/breaker.py): an endpoint that keeps timing
    # out or refusing connections is parked instead of holding sender threads.
    breaker_state = models.CharField(
        max_length=10, choices=BreakerState.choices, default=BreakerState.CLOSED
    )
    breaker_failures = models.PositiveIntegerField(
        default=0, help_text="Attempts in a row that got no answer."
    )
    breaker_trips = models.PositiveIntegerField(
        default=0, help_text="Times the breaker opened in a row; each doubles the pause."
    )
    breaker_probe_at = models.DateTimeField(
        null=True, blank=True, help_text="When an open breaker lets one probe through."
    )
    # Adaptive concurrency (deliveries/engine/breaker.py): a timeout or refused connection
    # halves what may be in flight at once, down to 1; answers grow it back by one per batch.
    concurrency_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="Requests allowed in flight now, cut after timeouts; empty: the maximum.",
    )

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["merchant", "is_enabled"])]

    def __str__(self) -> str:
        # Shown in the admin (lists, checkbox labels) and logs: query secrets and an
        # inspector's catch token masked too. The merchant's own pages use masked_url.
        from lib.masking import mask_url_secrets

        return mask_url_secrets(self.url)

    @property
    def masked_url(self) -> str:
        from lib.http import mask_url

        return mask_url(self.url)

    @property
    def status_label(self) -> str:
        if self.is_enabled:
            return "Enabled"
        if self.disabled_reason in (self.DisabledReason.FAILING, self.DisabledReason.GONE):
            return "Auto-disabled"
        return "Disabled"

    @property
    def is_paused(self) -> bool:
        """Paused by the circuit breaker: its deliveries wait (one is tried once the pause ends)."""
        return self.is_enabled and self.breaker_state == self.BreakerState.OPEN

    def pause_sentence(self, now: datetime | None = None) -> str:
        """Why nothing is sent and what happens next, in one sentence (without the backlog).

        "Paused after 5 attempts got no answer: we try again at 00:06 UTC". Once the pause is
        over, one delivery is tried; an answer ends the pause, silence starts a longer one.
        """
        if not self.is_paused:
            return ""
        failures = self.breaker_failures
        head = f"Paused after {failures:,} attempt{'s' if failures != 1 else ''} got no answer"
        now = now or timezone.now()
        if self.breaker_probe_at is not None and self.breaker_probe_at > now:
            return f"{head}: we try again at {self.breaker_probe_at:%H:%M} UTC"
        return f"{head}: we are trying one delivery now, and send the rest once it gets an answer"

    def held_until(self, now: datetime | None = None) -> str:
        """What a delivery held by the pause waits for: "until 00:06 UTC, when we try again"."""
        if not self.is_paused:
            return ""
        now = now or timezone.now()
        if self.breaker_probe_at is not None and self.breaker_probe_at > now:
            return f"until {self.breaker_probe_at:%H:%M} UTC, when we try again"
        return "until the delivery we are trying now gets an answer"

    def pause_label(self, now: datetime | None = None) -> str:
        """The pause as staff read it in the admin, in the dashboard's words."""
        if self.breaker_state != self.BreakerState.OPEN or self.breaker_probe_at is None:
            return "Not paused"
        now = now or timezone.now()
        if self.breaker_probe_at > now:
            return f"Paused: we try again at {self.breaker_probe_at:%Y-%m-%d %H:%M:%S} UTC"
        return "Paused: trying one delivery now"

    def breaker_label(self, now: datetime | None = None) -> str:
        """The breaker in the API's terms (`circuit_breaker.summary`): closed, open, probing."""
        if self.breaker_state != self.BreakerState.OPEN or self.breaker_probe_at is None:
            return "Closed"
        now = now or timezone.now()
        if self.breaker_probe_at > now:
            return f"Open: next probe at {self.breaker_probe_at:%Y-%m-%d %H:%M:%S} UTC"
        return "Half-open: one probe delivery allowed"

    @property
    def allowed_in_flight(self) -> int:
        """What may be in flight at once now: the maximum, or less after timeouts."""
        if self.concurrency_limit is None:
            return self.max_in_flight
        return max(1, min(self.concurrency_limit, self.max_in_flight))

    @property
    def breaker_is_parked(self) -> bool:
        """Open and not yet due for a probe: no deliveries are sent."""
        return (
            self.breaker_state == self.BreakerState.OPEN
            and self.breaker_probe_at is not None
            and self.breaker_probe_at > timezone.now()
        )

    # --- delivery controls -----------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        """The custom headers, name -> value, in the order they were given."""
        return json.loads(self.custom_headers) if self.custom_headers else {}

    @headers.setter
    def headers(self, value: dict[str, str]) -> None:
        self.custom_headers = json.dumps(value) if value else ""

    def wants(self, data: Any) -> bool:
        """True when an event with this data passes the endpoint's filter (or it has none)."""
        return filters.matches(self.filter, data)

    # --- signing -------------------------------------------------------------------------

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets that sign right now: the current one, and the previous during overlap."""
        now = now or timezone.now()
        secrets_ = [self.secret]
        if (
            self.previous_secret
            and self.previous_secret_expires_at
            and (self.previous_secret_expires_at > now)
        ):
            secrets_.append(self.previous_secret)
        return secrets_

    def rotate_secret(self, new_secret: str | None = None) -> str:
        """Replace the secret; the old one keeps signing too for 24 hours."""
        self.previous_secret = self.secret
        self.previous_secret_expires_at = timezone.now() + SECRET_OVERLAP
        self.secret = new_secret or signing.new_secret()
        self.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
        return self.secret

    # --- enabling and disabling ----------------------------------------------------------

    def enable(self) -> None:
        self.is_enabled = True
        self.disabled_reason = ""
        self.disabled_detail = ""
        self.disabled_at = None
        self.failing_since = None
        self.failure_warning_sent_at = None
        self.breaker_state = self.BreakerState.CLOSED
        self.breaker_failures = self.breaker_trips = 0
        self.breaker_probe_at = None
        self.save(
            update_fields=[
                "is_enabled",
                "disabled_reason",
                "disabled_detail",
                "disabled_at",
                "failing_since",
                "failure_warning_sent_at",
                "breaker_state",
                "breaker_failures",
                "breaker_trips",
                "breaker_probe_at",
            ]
        )


class OperatorWebhookManager(models.Manager["OperatorWebhook"]):
    def get_queryset(self) -> models.QuerySet[OperatorWebhook]:
        return super().get_queryset().filter(merchant__is_platform=True)


class OperatorWebhook(Endpoint):
    """The platform operator's webhooks (endpoints of its own merchant row), for the admin."""

    objects = OperatorWebhookManager()  # type: ignore[assignment]

    class Meta:
        proxy = True
        verbose_name = "operator webhook"


def test_data(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "message": "This is a test webhook from POS Webhooks.",
        "endpoint_id": endpoint.public_id,
        "sent_by": settings.SITE_URL,
    }
