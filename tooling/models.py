"""Merchant tooling: the request inspector and the external loyalty app."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from accounts.models import Merchant
from endpoints.models import Endpoint, EndpointQuerySet
from lib import signing
from lib.crypto import CredentialURLField, EncryptedTextField
from lib.ids import new_id


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
        # The table kept its name when the model moved here from the endpoints app.
        db_table = "endpoints_inspector"
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
        # The table kept its name when the model moved here from the endpoints app.
        db_table = "endpoints_inspectorrequest"
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
    url = CredentialURLField("App URL", max_length=2048)
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
        # The table kept its name when the model moved here from the endpoints app.
        db_table = "endpoints_loyaltyapp"
        verbose_name = "loyalty app"

    def __str__(self) -> str:
        return f"Loyalty app of {self.merchant}"

    @property
    def masked_url(self) -> str:
        from lib.http import mask_url

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
        # The table kept its name when the model moved here from the endpoints app.
        db_table = "endpoints_loyaltycall"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["merchant", "-id"], name="loyalty_call_recent"),
            models.Index(fields=["created_at"], name="loyalty_call_created"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.message_id}"
