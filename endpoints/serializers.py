"""The webhook resource of the API, in myPOS's request and response shapes.

myPOS: `payload_url` and `secret` in, `{"webhook": {"created_on", "id", "is_active",
"payload_url", "secret", "events": [{"id", "name"}]}}` out, `created_on` in RFC 1123 form.
Our own settings (category, log mode, retries, payload style, timeout) sit beside them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from accounts.models import Merchant
from catalogue.models import Category, EventType
from deliveries.engine import disable_endpoint
from endpoints.models import MAX_RATE_LIMIT, Endpoint
from endpoints.validators import (
    parse_filter,
    parse_headers,
    validate_secret,
    validate_webhook_url,
)
from lib import ordering
from lib.custom_headers import MAX_HEADERS, keep_masked, mask_value
from lib.http import mask_url
from lib.times import parse_since


class StrictChoiceField(serializers.ChoiceField):
    """A blank form value is an invalid choice: DRF reads `log_mode=` in a form-encoded body
    as if the field were absent, so a PATCH with it answered 200 and changed nothing."""

    def get_value(self, dictionary: Any) -> Any:
        if dictionary.get(self.field_name, None) == "":
            return ""
        return super().get_value(dictionary)


def mask_secret(secret: str) -> str:
    """Enough to tell secrets apart, never enough to sign with."""
    return secret[:6] + "****" + secret[-4:] if len(secret) > 12 else "****"


class EventsField(serializers.ListField):
    """Event type names: a JSON list, repeated form fields, or one comma-separated value."""

    child = serializers.CharField(max_length=100)

    def to_internal_value(self, data: Any) -> list[EventType]:
        if isinstance(data, str):
            data = [data]
        names: list[str] = []
        for item in super().to_internal_value(data):
            names.extend(part.strip() for part in item.split(",") if part.strip())
        found = {t.name: t for t in EventType.objects.filter(name__in=names, is_active=True)}
        unknown = [name for name in names if name not in found]
        if unknown:
            raise serializers.ValidationError(
                f"Unknown event type(s): {', '.join(sorted(set(unknown)))}. "
                "See GET /api/v1/event-types."
            )
        return [found[name] for name in dict.fromkeys(names)]


class OptionalBooleanField(serializers.BooleanField):
    """A form that leaves the field out means "unchanged", not False (DRF's checkbox rule)."""

    default_empty_html = empty


@extend_schema_field(OpenApiTypes.URI)
class UrlField(serializers.CharField):
    """Documented as a URI; checked by our own rules, whose messages say more than DRF's."""


FILTER_SCHEMA = {
    "type": "object",
    "nullable": True,
    "additionalProperties": True,
    "description": "Only events whose `data` match are delivered to this webhook (Convoy's "
    "syntax): field paths (dotted for nested fields, `items.$.sku` for any element of an "
    "array) to a value or to operators `$eq $neq $gt $gte $lt $lte $in $nin $exist $regex`, "
    "and `$and` / `$or` lists. `null` or `{}`: every event. In a form-encoded body, the "
    "JSON text of the object.",
    "example": {"outlet": {"$in": ["Main", "Airport"]}, "total": {"$gte": 100000}},
}
HEADERS_SCHEMA = {
    "type": "object",
    "nullable": True,
    "maxProperties": MAX_HEADERS,
    "additionalProperties": {"type": "string", "maxLength": 1000},
    "description": "Headers sent with every delivery, name to value (at most "
    f"{MAX_HEADERS}). Replaces the webhook's headers; a value sent back exactly as shown "
    "masked keeps the stored value. `null` or `{}` removes them. Values are shown masked.",
    "example": {"X-Api-Key": "****9f3a"},
}


RATE_LIMIT_HELP = (
    f"At most this many deliveries per second to this webhook (1 to {MAX_RATE_LIMIT}), "
    "across every worker, retries included; a backlog waits and drains at that rate. "
    "`null`: no limit. A test send is not held back by it."
)
ORDERING_KEY_SCHEMA = {
    "type": "string",
    "nullable": True,
    "maxLength": ordering.MAX_KEY_LENGTH,
    "description": "A field of the event's `data`, as a dotted path (`code`, "
    "`invoice.number`, `lines.0.sku`): deliveries to this webhook whose events have the same "
    "value there go one at a time, in the order the events were emitted; one that keeps "
    "failing holds back only its own value. Events without the field are not ordered. "
    'A change applies to events emitted afterwards. `null` or `""`: no ordering.',
    "example": "code",
}


@extend_schema_field(ORDERING_KEY_SCHEMA)
class OrderingKeyField(serializers.Field):
    """An ordering key (lib/ordering.py): a dotted path, or `null` / "" for none (stored "")."""

    def to_internal_value(self, data: Any) -> str:
        try:
            return ordering.clean_key(data) or ""
        except ordering.OrderingKeyError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: Any) -> str | None:
        return value or None


@extend_schema_field(FILTER_SCHEMA)
class FilterField(serializers.Field):
    """A filter object, or its JSON text in a form-encoded body; `null` for none."""

    def to_internal_value(self, data: Any) -> dict[str, Any] | None:
        return _parsed(parse_filter, data)

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(HEADERS_SCHEMA)
class HeadersField(serializers.Field):
    """Custom headers: an object of name -> value (or its JSON text); `null` for none."""

    def to_internal_value(self, data: Any) -> dict[str, str]:
        return _parsed(parse_headers, data)

    def to_representation(self, value: Any) -> Any:
        return value


class WebhookInput(serializers.Serializer):
    payload_url = UrlField(max_length=2048)
    secret = serializers.CharField(required=False, max_length=200, trim_whitespace=False)
    events = EventsField(required=False)
    category = serializers.SlugRelatedField(
        slug_field="slug", queryset=Category.objects.all(), required=False, allow_null=True
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)
    is_active = OptionalBooleanField(required=False)
    log_mode = StrictChoiceField(Endpoint.LogMode.choices, required=False)
    payload_style = StrictChoiceField(Endpoint.PayloadStyle.choices, required=False)
    retry_policy = StrictChoiceField(Endpoint.RetryPolicy.choices, required=False)
    fixed_retries = serializers.IntegerField(required=False, min_value=0, max_value=50)
    fixed_cooldown = serializers.IntegerField(required=False, min_value=1, max_value=86400)
    timeout = serializers.IntegerField(required=False, min_value=1, max_value=30)
    filter = FilterField(required=False, allow_null=True)
    headers = HeadersField(required=False, allow_null=True)
    rate_limit = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_RATE_LIMIT,
        help_text=RATE_LIMIT_HELP,
    )
    ordering_key = OrderingKeyField(required=False, allow_null=True)

    def validate_payload_url(self, value: str) -> str:
        return _django_check(validate_webhook_url, value.strip())

    def validate_secret(self, value: str) -> str:
        return _django_check(validate_secret, value)

    _FIELD_MAP = {
        "payload_url": "url",
        "fixed_cooldown": "fixed_cooldown_seconds",
        "timeout": "timeout_seconds",
    }

    def save_to(self, endpoint: Endpoint) -> Endpoint:
        """Apply the validated fields to a new or existing endpoint."""
        data = dict(self.validated_data)
        events = data.pop("events", None)
        is_active = data.pop("is_active", None)
        if "headers" in data:
            endpoint.headers = keep_masked(data.pop("headers") or {}, endpoint.headers)
        if "ordering_key" in data:
            data["ordering_key"] = data["ordering_key"] or ""  # `null` arrives as None
        with transaction.atomic():
            for name, value in data.items():
                setattr(endpoint, self._FIELD_MAP.get(name, name), value)
            endpoint.save()
            if events is not None:
                endpoint.event_types.set(events)
            if is_active is True and not endpoint.is_enabled:
                endpoint.enable()
            elif is_active is False and endpoint.is_enabled:
                disable_endpoint(
                    endpoint, Endpoint.DisabledReason.MERCHANT, "Disabled through the API."
                )
        return endpoint

    def create_for(self, merchant: Merchant) -> Endpoint:
        return self.save_to(Endpoint(merchant=merchant))


def _django_check(validator: Any, value: str) -> str:
    _parsed(validator, value)
    return value


def _parsed(parser: Any, value: Any) -> Any:
    """What a validator or parser of endpoints.validators returns, its error as DRF's."""
    try:
        return parser(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.messages) from None


class EventRef(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class CircuitBreakerOutput(serializers.Serializer):
    """The endpoint's circuit breaker: `closed`, `open` (parked until `next_probe_at`), or
    `half_open` (one probe delivery allowed)."""

    state = serializers.SerializerMethodField()
    failures_in_a_row = serializers.IntegerField(source="breaker_failures")
    next_probe_at = serializers.DateTimeField(source="breaker_probe_at", allow_null=True)
    summary = serializers.CharField(source="breaker_label")
    max_in_flight = serializers.IntegerField(help_text="Requests sent to it at once, at most.")
    allowed_in_flight = serializers.IntegerField(
        help_text="Requests allowed in flight now: halved by each batch of timeouts or refused "
        "connections (down to 1), grown back by one for each batch of answers."
    )

    def get_state(self, endpoint: Endpoint) -> str:
        if endpoint.breaker_state != Endpoint.BreakerState.OPEN:
            return "closed"
        return "open" if endpoint.breaker_is_parked else "half_open"


class WebhookOutput(serializers.Serializer):
    """One webhook. The secret is shown in full only when it was just set or generated."""

    id = serializers.CharField(source="public_id")
    created_on = serializers.SerializerMethodField()
    is_active = serializers.BooleanField(source="is_enabled")
    payload_url = serializers.SerializerMethodField()
    secret = serializers.SerializerMethodField()
    events = serializers.SerializerMethodField()
    category = serializers.CharField(source="category.slug", allow_null=True, default=None)
    description = serializers.CharField()
    status = serializers.CharField(source="status_label")
    disabled_reason = serializers.CharField()
    log_mode = serializers.CharField()
    payload_style = serializers.CharField()
    retry_policy = serializers.CharField()
    fixed_retries = serializers.IntegerField()
    fixed_cooldown = serializers.IntegerField(source="fixed_cooldown_seconds")
    timeout = serializers.IntegerField(source="timeout_seconds")
    filter = FilterField(allow_null=True)
    headers = serializers.SerializerMethodField()
    rate_limit = serializers.IntegerField(allow_null=True, help_text=RATE_LIMIT_HELP)
    ordering_key = OrderingKeyField(allow_null=True)
    circuit_breaker = serializers.SerializerMethodField()

    def get_created_on(self, endpoint: Endpoint) -> str:
        return http_date(endpoint.created_at.timestamp())

    def get_payload_url(self, endpoint: Endpoint) -> str:
        return mask_url(endpoint.url)

    def get_secret(self, endpoint: Endpoint) -> str:
        if self.context.get("reveal_secret"):
            return endpoint.secret
        return mask_secret(endpoint.secret)

    def get_events(self, endpoint: Endpoint) -> list[dict[str, str]]:
        return [{"id": str(t.pk), "name": t.name} for t in endpoint.event_types.all()]

    @extend_schema_field(HEADERS_SCHEMA)
    def get_headers(self, endpoint: Endpoint) -> dict[str, str]:
        return {name: mask_value(value) for name, value in endpoint.headers.items()}

    @extend_schema_field(CircuitBreakerOutput)
    def get_circuit_breaker(self, endpoint: Endpoint) -> dict[str, Any]:
        return CircuitBreakerOutput(endpoint).data


@extend_schema_field(OpenApiTypes.STR)
class SinceField(serializers.Field):
    """What `manage.py recover_deliveries --since` takes: 24h, 7d, 30m, or an ISO date-time."""

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str) or not data.strip():
            raise serializers.ValidationError("Expected 24h, 7d, 30m or an ISO date-time.")
        try:
            return parse_since(data)
        except ValueError:
            raise serializers.ValidationError(
                f"Expected 24h, 7d, 30m or an ISO date-time, got {data!r}."
            ) from None

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


class RecoverInput(serializers.Serializer):
    since = SinceField(
        help_text="Retry failed deliveries created at or after this time: a duration back "
        "from now (24h, 7d, 30m, as `manage.py recover_deliveries --since`) or an ISO 8601 "
        "date or date-time (UTC unless it says otherwise)."
    )


class ReplayInput(serializers.Serializer):
    since = SinceField(
        help_text="Send the events stored at or after this time (within the retention "
        "window): a duration back from now (24h, 7d, 30m) or an ISO 8601 date or date-time."
    )
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        default=list,
        max_length=200,
        help_text="Only these types (of those the webhook subscribes to); empty means all.",
    )
    dry_run = serializers.BooleanField(
        required=False, default=False, help_text="Only count what would be sent; send nothing."
    )
