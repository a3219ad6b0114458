"""/api/v1/events, /api/v1/deliveries and /api/v1/event-types.

`POST /api/v1/events` (one event) and `POST /api/v1/events/batch` (up to 100 in one
transaction) are the POS system's way in; an `Idempotency-Key` makes retrying either safe
(see deliveries/ingest.py). Lists are keyset-paginated (a cursor, never an offset) so they
stay fast however many rows a merchant has.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import limits
from accounts.api import (
    CURSOR_HINT,
    ApiError,
    JSONParser,
    PayloadTooLarge,
    accepted,
    check_params,
    int_param,
    limit_param,
    merchant_of,
)
from catalogue.models import EventType
from deliveries import emit, engine
from deliveries.ingest import KEY_PATTERN, KEY_RULE, Item, KeyConflict, ingest, is_valid_key
from deliveries.models import Delivery, Event, UnknownEventType
from deliveries.serializers import (
    MAX_BATCH_EVENTS,
    DeliveryDetail,
    DeliveryOutput,
    EventBatchInput,
    EventBatchItem,
    EventBatchRef,
    EventDetail,
    EventInput,
    EventOutput,
    EventTypeOutput,
)

EventEnvelope = inline_serializer("EventEnvelope", {"event": EventOutput()})
EventList = inline_serializer(
    "EventList",
    {
        "events": EventOutput(many=True),
        "has_more": serializers.BooleanField(),
        "next_cursor": serializers.CharField(allow_null=True),
    },
)
DeliveryList = inline_serializer(
    "DeliveryList",
    {
        "deliveries": DeliveryOutput(many=True),
        "has_more": serializers.BooleanField(),
        "next_cursor": serializers.CharField(allow_null=True),
    },
)
IDEMPOTENCY_HEADER = "Idempotency-Key"
LIMIT = OpenApiParameter("limit", int, description="Items per page: 1 to 100 (default 20).")
SIZE = OpenApiParameter("size", int, description="The same as `limit` (the webhooks list's name).")
EVENT_PARAMS = {"type", "after", "before", "limit", "size"}
DELIVERY_PARAMS = {"webhook", "event", "status", "before", "limit", "size"}


def _events_for(request: Request) -> QuerySet[Event]:
    return Event.objects.filter(merchant=merchant_of(request)).select_related(
        "event_type", "merchant"
    )


def _deliveries_for(request: Request) -> QuerySet[Delivery]:
    return Delivery.objects.filter(merchant=merchant_of(request)).select_related(
        "event__event_type", "endpoint"
    )


def _check_size(request: Request, limit: int) -> None:
    """Refuse an oversized body before parsing it: the header, then the body itself."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit or len(request.body) > limit:
        raise PayloadTooLarge(limit)


@extend_schema(
    methods=["GET"],
    parameters=[
        OpenApiParameter("type", str, description="Only events of this type."),
        OpenApiParameter(
            "after",
            int,
            description="Catch-up feed: events with a sequence number above this cursor, "
            "oldest first. Pass the previous page's `next_cursor`.",
        ),
        OpenApiParameter(
            "before", int, description="Events with a sequence number below this, newest first."
        ),
        LIMIT,
        SIZE,
    ],
    description="Events, newest first, or oldest first after a cursor. Unknown query "
    "parameters (such as `page`) are refused with 400.",
    responses=EventList,
    operation_id="events_list",
)
@extend_schema(
    methods=["POST"],
    request=EventInput,
    parameters=[
        OpenApiParameter(
            IDEMPOTENCY_HEADER,
            {"type": "string", "minLength": 1, "maxLength": 255, "pattern": KEY_PATTERN},
            location=OpenApiParameter.HEADER,
            description=f"Optional, {KEY_RULE}. A retry with the same key and the same event "
            "within 24 hours gets the event stored the first time (202 again, with "
            "`Idempotent-Replayed: true`), never a second event; the same key with a different "
            "event is a 409. Keys are per merchant.",
        ),
        OpenApiParameter(
            "Idempotent-Replayed",
            str,
            location=OpenApiParameter.HEADER,
            response=[202],
            description="`true` when the Idempotency-Key was known: the event is the earlier one.",
        ),
    ],
    responses={202: EventEnvelope},
    operation_id="events_create",
    description="Emit an event: it is stored at once and delivered to every subscribed, "
    "enabled webhook. Bodies over 256 KiB are refused with 413. With an `Idempotency-Key`, "
    "a retry never stores a second event (409 if the key came with another event).",
)
@api_view(["GET", "POST"])
def events(request: Request) -> Response:
    if request.method == "POST":
        return _emit(request)
    hint = CURSOR_HINT.format(cursor="after` (oldest first) or `before")
    check_params(request, EVENT_PARAMS, {"page": hint, "offset": hint, "cursor": hint})
    qs = _events_for(request)
    event_type = request.query_params.get("type")
    if event_type:
        qs = qs.filter(event_type__name=event_type)
    limit = limit_param(request)
    after = int_param(request, "after", None, 0, 2**62)
    before = int_param(request, "before", None, 0, 2**62)
    if after is not None:
        qs = qs.filter(sequence__gt=after).order_by("sequence")
    else:
        qs = qs.order_by("-sequence")
        if before is not None:
            qs = qs.filter(sequence__lt=before)
    rows = list(qs[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    return Response(
        {
            "events": EventOutput(rows, many=True).data,
            "has_more": has_more,
            "next_cursor": str(rows[-1].sequence) if rows else (str(after) if after else None),
        }
    )


def _emit(request: Request) -> Response:
    _check_size(request, settings.MAX_EVENT_BYTES)
    key = _idempotency_key(request)
    form = EventInput(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    if data.get("webhook_url"):
        _count_one_off(request)
    if key is not None:
        return _emit_once(request, Item(_event_fields(data), key))
    try:
        event = emit(
            merchant_of(request), data["type"], data["data"], webhook_url=data.get("webhook_url")
        )
    except UnknownEventType as exc:
        raise ApiError(400, "invalid_request", str(exc), {"type": str(exc)}) from None
    return accepted({"event": EventOutput(event).data})


def _count_one_off(request: Request) -> None:
    try:
        limits.count_one_off(merchant_of(request))
    except limits.LimitReached as exc:
        fields = {"webhook_url": str(exc)}
        raise ApiError(
            429, "limit_reached", str(exc), fields, retry_after=exc.retry_after
        ) from None


def _idempotency_key(request: Request) -> str | None:
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not is_valid_key(key):
        message = f"{IDEMPOTENCY_HEADER} must be {KEY_RULE}."
        raise ApiError(400, "invalid_request", message, {IDEMPOTENCY_HEADER: message})
    return key


def _event_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The validated event as stored and fingerprinted: the same for JSON and form bodies."""
    return {"type": data["type"], "data": data["data"], "webhook_url": data.get("webhook_url", "")}


def _emit_once(request: Request, item: Item) -> Response:
    """Emit one event under an Idempotency-Key: a known key answers with its event.

    A replay answers 202 like the first answer, not 200: the client retrying lost that
    answer, and should get the one it would have had (`Idempotent-Replayed` tells it apart).
    """
    try:
        _ingest(request, [item])
    except KeyConflict:
        message = f"This {IDEMPOTENCY_HEADER} was used with a different event in the last 24 hours."
        raise ApiError(
            409, "idempotency_conflict", message, {IDEMPOTENCY_HEADER: message}
        ) from None
    response = accepted({"event": EventOutput(item.event).data})
    response["Idempotent-Replayed"] = "true" if item.replayed else "false"
    return response


def _ingest(request: Request, items: list[Item]) -> None:
    try:
        ingest(merchant_of(request), items)
    except UnknownEventType as exc:
        raise ApiError(400, "invalid_request", str(exc), {"type": str(exc)}) from None


@extend_schema(
    request=EventBatchInput,
    responses={202: inline_serializer("EventBatchAccepted", {"events": EventBatchRef(many=True)})},
    operation_id="events_batch",
    description=f"Emit 1 to {MAX_BATCH_EVENTS} events in one transaction: all are stored or "
    "none. The answer lists the events in request order. A bad item refuses the whole batch "
    "with 400, `error.fields.events` naming each bad item by its index and field. Bodies over "
    "1 MiB are refused with 413 (each event at most 256 KiB). An item's `idempotency_key` "
    "works as the Idempotency-Key header does for one event; a key used with a different "
    "event refuses the batch with 409.",
)
@api_view(["POST"])
@parser_classes([JSONParser])
def events_batch(request: Request) -> Response:
    _check_size(request, settings.MAX_BATCH_BYTES)
    items = _batch_items(request)
    for item in items:
        if item.fields["webhook_url"]:
            _count_one_off(request)
    try:
        _ingest(request, items)
    except KeyConflict as exc:
        message = "Used with a different event in the last 24 hours."
        fields = {"events": {str(i): {"idempotency_key": message} for i in exc.indices}}
        first = f"events[{exc.indices[0]}].idempotency_key: {message}"
        raise ApiError(409, "idempotency_conflict", first, fields) from None
    refs = [
        {"id": item.event.public_id, "sequence": item.event.sequence, "replayed": item.replayed}
        for item in items
        if item.event is not None
    ]
    return accepted({"events": refs})


def _batch_items(request: Request) -> list[Item]:
    """The batch's items, or a 400 naming every bad item by index and field.

    Raises:
        ApiError: the body is not a list of 1 to 100 events, or any item is invalid.
    """
    raw = request.data.get("events") if isinstance(request.data, dict) else None
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_BATCH_EVENTS:
        message = f"A list of 1 to {MAX_BATCH_EVENTS} events is required."
        raise ApiError(400, "invalid_request", f"events: {message}", {"events": message})
    # No single event can be over the limit when the whole body is not.
    check_sizes = len(request.body) > settings.MAX_EVENT_BYTES
    items: list[Item] = []
    errors: dict[str, dict[str, str]] = {}
    first_with_key: dict[str, int] = {}
    for index, raw_item in enumerate(raw):
        item, item_errors = _batch_item(raw_item, check_sizes)
        if item is not None and item.key is not None:
            earlier = first_with_key.setdefault(item.key, index)
            if earlier != index:
                item_errors = {"idempotency_key": f"Repeats the key of item {earlier}."}
        if item_errors:
            errors[str(index)] = item_errors
        elif item is not None:
            items.append(item)
    if errors:
        index, item_errors = next(iter(errors.items()))
        field, message = next(iter(item_errors.items()))
        raise ApiError(
            400, "invalid_request", f"events[{index}].{field}: {message}", {"events": errors}
        )
    return items


def _batch_item(raw: Any, check_size: bool) -> tuple[Item | None, dict[str, str]]:
    """One batch item validated as a single event is, with its errors by field."""
    if not isinstance(raw, dict):
        return None, {"non_field_errors": "Each event must be a JSON object."}
    form = EventBatchItem(data=raw)
    if not form.is_valid():
        return None, {name: str(errors[0]) for name, errors in form.errors.items()}
    if check_size and _json_size(raw) > settings.MAX_EVENT_BYTES:
        limit = settings.MAX_EVENT_BYTES // 1024
        return None, {"data": f"The event is larger than {limit} KiB."}
    data = form.validated_data
    return Item(_event_fields(data), data.get("idempotency_key")), {}


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


@extend_schema(
    responses=inline_serializer("EventDetailEnvelope", {"event": EventDetail()}),
    operation_id="events_retrieve",
    description="One event with its deliveries: what thin-payload receivers fetch.",
)
@api_view(["GET"])
def event(request: Request, public_id: str) -> Response:
    obj = get_object_or_404(_events_for(request), public_id=public_id)
    deliveries = obj.deliveries.select_related("event__event_type", "endpoint").order_by("id")
    body = EventOutput(obj).data
    body["deliveries"] = DeliveryOutput(deliveries, many=True).data
    return Response({"event": body})


@extend_schema(
    parameters=[
        OpenApiParameter("webhook", str, description="Only deliveries to this webhook id."),
        OpenApiParameter("event", str, description="Only deliveries of this event id."),
        OpenApiParameter(
            "status",
            str,
            enum=[s.value for s in Delivery.Status],
            description="Only deliveries in this state.",
        ),
        OpenApiParameter("before", str, description="The previous page's `next_cursor`."),
        LIMIT,
        SIZE,
    ],
    description="Deliveries, newest first. Unknown query parameters (such as `page`) are "
    "refused with 400.",
    responses=DeliveryList,
    operation_id="deliveries_list",
)
@api_view(["GET"])
def deliveries(request: Request) -> Response:
    hint = CURSOR_HINT.format(cursor="before")
    check_params(request, DELIVERY_PARAMS, {"page": hint, "offset": hint, "cursor": hint})
    qs = _deliveries_for(request).order_by("-id")
    params = request.query_params
    if params.get("webhook"):
        qs = qs.filter(endpoint__public_id=params["webhook"])
    if params.get("event"):
        qs = qs.filter(event__public_id=params["event"])
    if params.get("status"):
        if params["status"] not in Delivery.Status.values:
            message = f"status must be one of: {', '.join(Delivery.Status.values)}."
            raise ApiError(400, "invalid_request", message, {"status": message})
        qs = qs.filter(status=params["status"])
    if params.get("before"):
        cursor = _deliveries_for(request).filter(public_id=params["before"]).first()
        if cursor is None:
            raise ApiError(400, "invalid_request", "Unknown cursor.", {"before": "Unknown cursor."})
        qs = qs.filter(id__lt=cursor.pk)
    limit = limit_param(request)
    rows = list(qs[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    return Response(
        {
            "deliveries": DeliveryOutput(rows, many=True).data,
            "has_more": has_more,
            "next_cursor": rows[-1].public_id if rows and has_more else None,
        }
    )


DeliveryDetailEnvelope = inline_serializer("DeliveryDetailEnvelope", {"delivery": DeliveryDetail()})


@extend_schema(responses=DeliveryDetailEnvelope, operation_id="deliveries_retrieve")
@api_view(["GET"])
def delivery(request: Request, public_id: str) -> Response:
    obj = get_object_or_404(_deliveries_for(request), public_id=public_id)
    return Response({"delivery": DeliveryDetail(obj).data})


class RetryInput(serializers.Serializer):
    keep_place = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Ordered delivery: keep its original place among the deliveries of its "
        "value. By default it goes behind those that exist now, so it does not jump ahead "
        "of newer ones.",
    )


@extend_schema(
    request=RetryInput,
    responses={202: inline_serializer("DeliveryEnvelope", {"delivery": DeliveryOutput()})},
    operation_id="deliveries_retry",
    description="Send a failed or cancelled delivery again; 409 for any other state. An "
    "ordered delivery goes behind the deliveries of its value that exist now, unless "
    "`keep_place` is true.",
)
@api_view(["POST"])
# Multipart too: a bare POST from an HTTP library that defaults to it keeps working now that
# the body is read (for `keep_place`).
@parser_classes([JSONParser, FormParser, MultiPartParser])
def delivery_retry(request: Request, public_id: str) -> Response:
    obj = get_object_or_404(_deliveries_for(request), public_id=public_id)
    form = RetryInput(data=request.data)
    form.is_valid(raise_exception=True)
    keep_place = form.validated_data["keep_place"]
    if not engine.retry_now(Delivery.objects.filter(pk=obj.pk), keep_place=keep_place):
        raise ApiError(
            409,
            "not_retryable",
            f"Only failed or cancelled deliveries can be retried; this one is {obj.status}.",
        )
    obj.refresh_from_db()
    return accepted({"delivery": DeliveryOutput(obj).data})


@extend_schema(
    responses=inline_serializer("EventTypeList", {"event_types": EventTypeOutput(many=True)}),
    operation_id="event_types_list",
)
@api_view(["GET"])
def event_types(request: Request) -> Response:
    qs = EventType.objects.filter(is_active=True).select_related("category")
    return Response({"event_types": EventTypeOutput(qs, many=True).data})
