"""/api/v1/events, /api/v1/deliveries and /api/v1/event-types.

`POST /api/v1/events` is the POS system's way in. Lists are keyset-paginated (a cursor,
never an offset) so they stay fast however many rows a merchant has.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from deliveries import emit, engine
from deliveries.models import Delivery, Event, UnknownEventType
from deliveries.serializers import (
    DeliveryDetail,
    DeliveryOutput,
    EventDetail,
    EventInput,
    EventOutput,
    EventTypeOutput,
)
from endpoints import limits
from endpoints.models import EventType
from webhooks_project.api import (
    CURSOR_HINT,
    ApiError,
    PayloadTooLarge,
    accepted,
    check_params,
    int_param,
    limit_param,
    merchant_of,
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


def _check_size(request: Request) -> None:
    """Refuse an oversized event before reading it: the header, then the body itself."""
    limit = settings.MAX_EVENT_BYTES
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
    responses={202: EventEnvelope},
    operation_id="events_create",
    description="Emit an event: it is stored at once and delivered to every subscribed, "
    "enabled webhook. Bodies over 256 KiB are refused with 413.",
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
    _check_size(request)
    form = EventInput(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    if data.get("webhook_url"):
        _count_one_off(request)
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


@extend_schema(
    request=None,
    responses={202: inline_serializer("DeliveryEnvelope", {"delivery": DeliveryOutput()})},
    operation_id="deliveries_retry",
    description="Send a failed or cancelled delivery again; 409 for any other state.",
)
@api_view(["POST"])
def delivery_retry(request: Request, public_id: str) -> Response:
    obj = get_object_or_404(_deliveries_for(request), public_id=public_id)
    if not engine.retry_now(Delivery.objects.filter(pk=obj.pk)):
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
