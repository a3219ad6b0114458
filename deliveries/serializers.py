"""Events, deliveries and the catalogue as the API shows them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.http import QueryDict
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalogue.models import EventType
from catalogue.seed import PLATFORM_CATEGORY
from deliveries.ingest import KEY_PATTERN, KEY_RULE
from deliveries.models import (
    ATTEMPT_COLUMNS,
    Delivery,
    DeliveryAttempt,
    UnknownEventType,
    active_event_type,
)
from endpoints.validators import validate_webhook_url
from lib import ordering
from lib.event_data import SURROGATE_MESSAGE, contains_nul, contains_surrogate
from lib.http import mask_url

MAX_BATCH_EVENTS = 100


class Timestamp(serializers.DateTimeField):
    """UTC to the millisecond with a Z, exactly as `created_at` in webhook bodies.

    One precision everywhere: DRF's default wrote microseconds here while bodies had
    milliseconds, so the same event's `created_at` did not compare equal.
    """

    def to_representation(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonValueField(serializers.JSONField):
    """Any JSON value; a form field carries it as a JSON string."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and isinstance(self.root.initial_data, QueryDict):
            try:
                return json.loads(data)
            except json.JSONDecodeError:
                raise serializers.ValidationError("Must be valid JSON.") from None
        return super().to_internal_value(data)


class EventInput(serializers.Serializer):
    type = serializers.CharField(max_length=100, help_text="An event type from the catalogue.")
    data = JsonValueField(required=False, default=dict, help_text="Any JSON value.")
    webhook_url = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2048,
        help_text="A one-off URL that also receives this event (Smart Router style).",
    )

    def validate_type(self, value: str) -> str:
        try:
            event_type = active_event_type(value)
        except UnknownEventType:
            raise serializers.ValidationError(
                f"Unknown event type {value!r}. See GET /api/v1/event-types."
            ) from None
        if event_type.category_id is not None and event_type.category.slug == PLATFORM_CATEGORY:
            raise serializers.ValidationError(
                f"{value!r} is an operational event: only the platform sends it."
            )
        return value

    def validate_data(self, value: Any) -> Any:
        # PostgreSQL's jsonb cannot store U+0000: refused here for every database, so an
        # event the API accepts is always one it can store.
        if contains_nul(value):
            raise serializers.ValidationError(
                "Must not contain the NUL character (\\u0000) in any string or key."
            )
        # UTF-8 cannot encode a lone surrogate: stored, it made every answer showing it a 500.
        if contains_surrogate(value):
            raise serializers.ValidationError(SURROGATE_MESSAGE)
        return value

    def validate_webhook_url(self, value: str) -> str:
        if value:
            try:
                validate_webhook_url(value)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.messages) from None
        return value


class EventBatchItem(EventInput):
    idempotency_key = serializers.RegexField(
        KEY_PATTERN,
        required=False,
        max_length=255,
        help_text="Optional: makes retrying this item safe, as the Idempotency-Key header does "
        f"for one event; {KEY_RULE}, kept 24 hours.",
        error_messages={"invalid": f"Must be {KEY_RULE}."},
    )


class EventBatchInput(serializers.Serializer):
    """Documents the batch body; the view checks it item by item to name each failure."""

    events = EventBatchItem(many=True, min_length=1, max_length=MAX_BATCH_EVENTS)


class EventBatchRef(serializers.Serializer):
    id = serializers.CharField()
    sequence = serializers.IntegerField()
    replayed = serializers.BooleanField(
        help_text="True when the item's idempotency_key was known: this is the earlier event."
    )


class DeliveryOutputList(serializers.ListSerializer):
    """Deliveries, with what each ordered one waits for read in one query for all of them."""

    def to_representation(self, data: Any) -> list[Any]:
        rows = list(data.all() if isinstance(data, models.manager.BaseManager) else data)
        self.waiting_for = Delivery.objects.waiting_for_ids(rows)
        return [self.child.to_representation(row) for row in rows]


ORDERING_VALUE_HELP = (
    "Ordered delivery: the value of the webhook's `ordering_key` in the event's data (its "
    "text for a string, its JSON for anything else), or `null` when this delivery is not "
    "ordered. Deliveries with the same value go one at a time, in emit order."
)
WAITING_FOR_HELP = (
    "Ordered delivery: the id of the delivery of the same value that must succeed or fail "
    "for good before this one is sent, or `null` when it waits for none."
)


class DeliveryOutput(serializers.Serializer):
    class Meta:
        list_serializer_class = DeliveryOutputList

    id = serializers.CharField(source="public_id")
    event_id = serializers.CharField(source="event.public_id")
    event_type = serializers.CharField(source="event.event_type.name")
    webhook_id = serializers.CharField(source="endpoint.public_id", allow_null=True, default=None)
    url = serializers.SerializerMethodField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    last_duration_ms = serializers.IntegerField(allow_null=True)
    next_attempt_at = Timestamp(allow_null=True)
    created_at = Timestamp()
    completed_at = Timestamp(allow_null=True)
    ordering_value = serializers.SerializerMethodField(help_text=ORDERING_VALUE_HELP)
    waiting_for = serializers.SerializerMethodField(help_text=WAITING_FOR_HELP)

    def get_url(self, delivery: Delivery) -> str:
        return mask_url(delivery.target_url)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_ordering_value(self, delivery: Delivery) -> str | None:
        if delivery.ordering_value is None:
            return None
        return ordering.shown(delivery.ordering_value)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_waiting_for(self, delivery: Delivery) -> str | None:
        if isinstance(self.parent, DeliveryOutputList):
            return self.parent.waiting_for.get(delivery.pk)
        return Delivery.objects.waiting_for_ids([delivery]).get(delivery.pk)


class AttemptOutput(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: Timestamp,
    }

    class Meta:
        model = DeliveryAttempt
        # The columns the engine writes, less the foreign key the API shows as a parent.
        fields = [c for c in ATTEMPT_COLUMNS if c != "delivery_id"]


class DeliveryDetail(DeliveryOutput):
    attempts_log = AttemptOutput(source="attempt_log", many=True)


class EventOutput(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    type = serializers.CharField(source="event_type.name")
    created_at = Timestamp()
    merchant_id = serializers.CharField(source="merchant.public_id")
    sequence = serializers.IntegerField()
    data = serializers.JSONField()


class EventDetail(EventOutput):
    deliveries = DeliveryOutput(many=True)


class EventTypeOutput(serializers.Serializer):
    id = serializers.CharField(source="pk")
    name = serializers.CharField()
    description = serializers.CharField()
    category = serializers.SerializerMethodField()
    sample = serializers.JSONField()

    def get_category(self, event_type: EventType) -> dict[str, str]:
        return {"id": event_type.category.slug, "name": event_type.category.name}
