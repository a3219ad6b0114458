"""Merchants (tenants), their users, the event catalogue and webhook endpoints."""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models, transaction
from django.utils import timezone

from deliveries import signing
from endpoints.crypto import EncryptedTextField
from endpoints.ids import new_id

SECRET_OVERLAP = timedelta(hours=24)


def _merchant_id() -> str:
    return new_id("mrc")


def _endpoint_id() -> str:
    return new_id("ep")


class Merchant(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=_merchant_id, editable=False)
    name = models.CharField(max_length=200)
    # The last sequence number handed to one of this merchant's events.
    event_sequence = models.BigIntegerField(default=0, editable=False)
    # Signs deliveries to one-off `webhook_url`s, which have no endpoint of their own.
    webhook_secret = EncryptedTextField(default=signing.new_secret)
    notification_email = models.EmailField(
        blank=True, help_text="Where failure warnings go; empty means every member's e-mail."
    )
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Days to keep delivery logs; empty means the default."
    )
    # Per-merchant limits that staff may raise; empty means the MERCHANT_MAX_* setting.
    max_webhooks = models.PositiveIntegerField(
        null=True, blank=True, help_text="Webhooks at most; empty means the default."
    )
    max_api_keys = models.PositiveIntegerField(
        null=True, blank=True, help_text="Active API keys at most; empty means the default."
    )
    max_inspectors = models.PositiveIntegerField(
        null=True, blank=True, help_text="Request inspectors at most; empty means the default."
    )
    max_one_off_per_hour = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Events with a one-off webhook_url per hour; empty means the default.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    LIMITS = ("webhooks", "api_keys", "inspectors", "one_off_per_hour")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    def next_sequence(self) -> int:
        """Take the next event sequence number; call inside the transaction that stores the event.

        The UPDATE takes the row's write lock, so concurrent emitters queue up and every
        number is used once, in commit order.
        """
        table = connection.ops.quote_name(Merchant._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET event_sequence = event_sequence + 1 WHERE id = %s "
                "RETURNING event_sequence",
                [self.pk],
            )
            self.event_sequence = cursor.fetchone()[0]
        return self.event_sequence

    def limit(self, name: str) -> int:
        """A limit of `LIMITS`: this merchant's own value, or else the setting's default."""
        own = getattr(self, f"max_{name}")
        return own if own is not None else getattr(settings, f"MERCHANT_MAX_{name.upper()}")

    def notification_recipients(self) -> list[str]:
        if self.notification_email:
            return [self.notification_email]
        return [u.email for u in self.users.filter(is_active=True) if u.email]


class User(AbstractUser):
    """A person who logs in. Merchant users belong to one merchant; staff may belong to none."""

    merchant = models.ForeignKey(
        Merchant, null=True, blank=True, on_delete=models.CASCADE, related_name="users"
    )


class Category(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class EventType(models.Model):
    name = models.CharField(max_length=100, unique=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="event_types")
    description = models.CharField(max_length=300, blank=True)
    source = models.CharField(max_length=50, blank=True, help_text="Where the type comes from.")
    sample = models.JSONField(default=dict, blank=True, help_text="A sample `data` payload.")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["category__position", "name"]

    def __str__(self) -> str:
        return self.name


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
    url = models.CharField("Webhook URL", max_length=2048)
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

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["merchant", "is_enabled"])]

    def __str__(self) -> str:
        return self.masked_url

    @property
    def masked_url(self) -> str:
        from deliveries.http import mask_url

        return mask_url(self.url)

    @property
    def status_label(self) -> str:
        if self.is_enabled:
            return "Enabled"
        if self.disabled_reason in (self.DisabledReason.FAILING, self.DisabledReason.GONE):
            return "Auto-disabled"
        return "Disabled"

    def breaker_label(self, now: datetime | None = None) -> str:
        """The breaker as a merchant reads it: closed, open until a time, or probing."""
        if self.breaker_state != self.BreakerState.OPEN or self.breaker_probe_at is None:
            return "Closed"
        now = now or timezone.now()
        if self.breaker_probe_at > now:
            return f"Open: next probe at {self.breaker_probe_at:%Y-%m-%d %H:%M:%S} UTC"
        return "Half-open: one probe delivery allowed"

    @property
    def breaker_is_parked(self) -> bool:
        """Open and not yet due for a probe: no deliveries are sent."""
        return (
            self.breaker_state == self.BreakerState.OPEN
            and self.breaker_probe_at is not None
            and self.breaker_probe_at > timezone.now()
        )

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

    # --- manual delivery operations (used by the dashboard, the API and the admin) -------


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)

    def authenticate(self, raw_key: str) -> ApiKey | None:
        """The active key for a bearer token, or None. Only the hash is ever stored."""
        if not raw_key.startswith(API_KEY_PREFIX):
            return None
        key = _active_key_with_merchant(ApiKey.hash(raw_key))
        if key is not None and (
            key.last_used_at is None or timezone.now() - key.last_used_at > timedelta(minutes=1)
        ):
            # Throttled, so a busy POS does not write this row on every request.
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
        return key


def _active_key_with_merchant(key_hash: str) -> ApiKey | None:
    """The unrevoked key with this hash and its merchant, in one plain query.

    Every API request runs this; building it with the ORM cost several times the query.
    """
    qn = connection.ops.quote_name
    key_fields = ApiKey._meta.concrete_fields
    merchant_fields = Merchant._meta.concrete_fields
    columns = [f"k.{qn(f.column)}" for f in key_fields]
    columns += [f"m.{qn(f.column)}" for f in merchant_fields]
    sql = (
        f"SELECT {', '.join(columns)} FROM {qn(ApiKey._meta.db_table)} k "
        f"JOIN {qn(Merchant._meta.db_table)} m ON m.{qn('id')} = k.{qn('merchant_id')} "
        f"WHERE k.{qn('key_hash')} = %s AND k.{qn('revoked_at')} IS NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [key_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(key_fields)
    key = _from_row(ApiKey, row[:split])
    key.merchant = _from_row(Merchant, row[split:])
    return key


def _from_row(model: type[models.Model], values: Sequence[Any]) -> Any:
    """A model instance from its concrete columns, converted as the ORM would."""
    attnames, converters = _row_reader(model, connection.vendor)
    converted = []
    for value, (col, convert_all) in zip(values, converters, strict=True):
        if value is not None:
            # SQLite hands datetimes back as text; encrypted fields decrypt here.
            for convert in convert_all:
                value = convert(value, col, connection)
        converted.append(value)
    return model.from_db(connection.alias, attnames, converted)


@functools.cache
def _row_reader(model: type[models.Model], vendor: str) -> tuple[list[str], list[Any]]:
    fields = model._meta.concrete_fields
    converters = []
    for f in fields:
        col = f.get_col(model._meta.db_table)
        convert_all = connection.ops.get_db_converters(col) + f.get_db_converters(connection)
        converters.append((col, convert_all))
    return [f.attname for f in fields], converters


API_KEY_PREFIX = "whk_"


class ApiKey(models.Model):
    """A bearer key for the REST API. Shown once at creation; stored as a SHA-256 hash."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters, to tell keys apart.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"

    @staticmethod
    def hash(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def issue(
        cls, merchant: Merchant, name: str, created_by: User | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it with the raw key, which is never retrievable again."""
        raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            merchant=merchant,
            name=name,
            prefix=raw[:12],
            key_hash=cls.hash(raw),
            created_by=created_by,
        )
        return key, raw

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class OAuthClient(models.Model):
    """A merchant's OAuth 2.0 client (client-credentials grant), as myPOS integrators use.

    django-oauth-toolkit's Application issues the tokens; this row scopes it to one
    merchant, so a token it issued reaches that merchant's data and nothing else.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="oauth_clients")
    application = models.OneToOneField(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="merchant_client",
    )
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "OAuth client"

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    @property
    def client_id(self) -> str:
        return self.application.client_id

    @classmethod
    def issue(
        cls, merchant: Merchant, name: str, created_by: User | None = None
    ) -> tuple[OAuthClient, str]:
        """Create a client; returns it with the raw secret, which is stored hashed only."""
        from oauth2_provider.generators import generate_client_secret
        from oauth2_provider.models import get_application_model

        application_model = get_application_model()
        raw_secret = generate_client_secret()
        with transaction.atomic():
            application = application_model.objects.create(
                name=f"{merchant.public_id}: {name}"[:255],
                client_type=application_model.CLIENT_CONFIDENTIAL,
                authorization_grant_type=application_model.GRANT_CLIENT_CREDENTIALS,
                client_secret=raw_secret,
                hash_client_secret=True,
            )
            client = cls.objects.create(
                merchant=merchant, application=application, name=name, created_by=created_by
            )
        return client, raw_secret

    def delete_with_tokens(self) -> None:
        """Remove the client; its application and every token it issued go with it."""
        self.application.delete()


def merchant_for_oauth_token(raw_token: str) -> Merchant | None:
    """The merchant of an unexpired, unrevoked access token, or None.

    Only the token's SHA-256 checksum is stored (OAUTH2_PROVIDER's RFC 9700 storage).
    """
    from oauth2_provider.models import get_access_token_model

    checksum = hashlib.sha256(raw_token.encode()).hexdigest()
    token = (
        get_access_token_model()
        .objects.filter(token_checksum=checksum, expires__gt=timezone.now())
        .select_related("application__merchant_client__merchant")
        .first()
    )
    if token is None or token.application is None:
        return None
    client = getattr(token.application, "merchant_client", None)
    return client.merchant if client is not None else None


def test_data(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "message": "This is a test webhook from POS Webhooks.",
        "endpoint_id": endpoint.public_id,
        "sent_by": settings.SITE_URL,
    }


# --- merchant tooling: the request inspector and the external loyalty app -----------------


def _inspector_id() -> str:
    return new_id("ins")


def _inspector_token() -> str:
    # The token is the only credential of a public URL: 32 random bytes, unguessable.
    return secrets.token_urlsafe(32)


class Inspector(models.Model):
    """A URL that records whatever is sent to it (`/catch/<token>/`), for trying webhooks."""

    class Answer(models.TextChoices):
        OK = "200", "200 OK"
        ERROR = "500", "500 Internal Server Error"
        GONE = "410", "410 Gone"
        SLOW = "slow", "Slow"

    MAX_SLOW_SECONDS = 35  # past our 30-second deadline, so a sender times out first
    KEEP_REQUESTS = 100

    public_id = models.CharField(max_length=40, unique=True, default=_inspector_id, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="inspectors")
    name = models.CharField(max_length=100)
    token = models.CharField(max_length=64, unique=True, default=_inspector_token, editable=False)
    answer = models.CharField(max_length=10, choices=Answer.choices, default=Answer.OK)
    slow_seconds = models.PositiveIntegerField(
        default=MAX_SLOW_SECONDS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_SLOW_SECONDS)],
        help_text="Slow answer: seconds to wait before answering 200.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    @property
    def path(self) -> str:
        from django.urls import reverse

        return reverse("catch", args=[self.token])

    @property
    def slow_delay(self) -> int:
        """Seconds the slow answer really waits: capped so no web thread is held for long."""
        return min(self.slow_seconds, settings.INSPECTOR_SLOW_MAX_SECONDS)

    def pointing_endpoints(self) -> EndpointQuerySet:
        """The merchant's webhooks whose URL is this inspector's."""
        return Endpoint.objects.for_merchant(self.merchant).filter(url__contains=self.path)

    def clear(self) -> int:
        return self.requests.all().delete()[0]


class InspectorRequest(models.Model):
    """One request an inspector received. Only the latest `Inspector.KEEP_REQUESTS` are kept."""

    class Signature(models.TextChoices):
        VALID = "valid", "Signature valid"
        INVALID = "invalid", "Signature invalid"
        UNSIGNED = "unsigned", "Not signed"

    inspector = models.ForeignKey(Inspector, on_delete=models.CASCADE, related_name="requests")
    method = models.CharField(max_length=16)
    path = models.CharField(max_length=2048)
    headers = models.JSONField(default=dict)
    body = models.TextField(blank=True)
    size = models.PositiveIntegerField(default=0, help_text="Bytes received.")
    source = models.CharField(max_length=64, blank=True)
    answered = models.CharField(max_length=10, blank=True, help_text="What it was answered.")
    signature = models.CharField(
        max_length=10, choices=Signature.choices, default=Signature.UNSIGNED
    )
    signature_detail = models.CharField(max_length=300, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["inspector", "-id"], name="inspector_request_recent")]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


class LoyaltyAction(models.TextChoices):
    """DealPOS's External Loyalty App call-outs; the value is the API path segment."""

    FETCH_MEMBER_POINT = "fetch-member-point", "Fetch Member Point"
    ORDER_COMPLETE = "order-complete", "Order Complete"
    VALIDATE_COUPON = "validate-coupon", "Validate Coupon"


class LoyaltyApp(models.Model):
    """A merchant's external loyalty app: the POS calls it through us, synchronously."""

    merchant = models.OneToOneField(Merchant, on_delete=models.CASCADE, related_name="loyalty_app")
    url = models.CharField("App URL", max_length=2048)
    secret = EncryptedTextField(default=signing.new_secret)
    timeout_seconds = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(30)]
    )
    log_mode = models.CharField(
        max_length=10, choices=Endpoint.LogMode.choices, default=Endpoint.LogMode.FULL
    )
    fetch_member_point = models.BooleanField("Fetch Member Point", default=True)
    order_complete = models.BooleanField("Order Complete", default=True)
    validate_coupon = models.BooleanField("Validate Coupon", default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "loyalty app"

    def __str__(self) -> str:
        return f"Loyalty app of {self.merchant}"

    @property
    def masked_url(self) -> str:
        from deliveries.http import mask_url

        return mask_url(self.url)

    def enables(self, action: str) -> bool:
        return bool(getattr(self, action.replace("-", "_"), False))

    def enabled_actions(self) -> list[LoyaltyAction]:
        return [action for action in LoyaltyAction if self.enables(action)]


class LoyaltyCall(models.Model):
    """The log of one call to a loyalty app, written according to the app's log mode."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="loyalty_calls")
    action = models.CharField(max_length=30, choices=LoyaltyAction.choices)
    message_id = models.CharField(max_length=40)
    url = models.CharField(max_length=2048)
    request_body = models.TextField(blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    succeeded = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["merchant", "-id"], name="loyalty_call_recent"),
            models.Index(fields=["created_at"], name="loyalty_call_created"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.message_id}"
