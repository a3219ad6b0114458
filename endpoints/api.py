"""/api/v1/webhooks: create, list, read, update and delete webhooks, as myPOS's API does.

Plus our actions on one webhook: send a test, rotate its secret, recover failed deliveries.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import limits, outbound
from accounts.api import (
    ApiError,
    JSONParser,
    accepted,
    busy_error,
    check_params,
    merchant_of,
    page_params,
)
from deliveries.engine import ReplayRefused, count_missing, replay, retry_failed
from endpoints import send_tests
from endpoints.models import Endpoint
from endpoints.serializers import RecoverInput, ReplayInput, WebhookInput, WebhookOutput

WebhookEnvelope = inline_serializer("WebhookEnvelope", {"webhook": WebhookOutput()})
WebhookList = inline_serializer(
    "WebhookList",
    {
        "webhooks": WebhookOutput(many=True),
        "pagination": inline_serializer(
            "Pagination",
            {
                "page": serializers.IntegerField(),
                "size": serializers.IntegerField(),
                "total": serializers.IntegerField(),
            },
        ),
    },
)
PAGE_PARAMS = [
    OpenApiParameter("page", int, description="Page number, from 1."),
    OpenApiParameter("size", int, description="Items per page: 1 to 100 (default 20)."),
    OpenApiParameter("limit", int, description="The same as `size` (the other lists' name)."),
]
WEBHOOK_LIST_PARAMS = {"page", "size", "limit"}


def _endpoints_for(request: Request) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(merchant=merchant_of(request)).prefetch_related("event_types")


def _get_endpoint_for_key(request: Request, public_id: str) -> Endpoint:
    """The caller's webhook, or 404 (another merchant's webhook does not exist for them)."""
    return get_object_or_404(_endpoints_for(request), public_id=public_id)


def _one(endpoint: Endpoint, *, reveal_secret: bool = False, code: int = 200) -> Response:
    context = {"reveal_secret": reveal_secret}
    response = Response({"webhook": WebhookOutput(endpoint, context=context).data}, status=code)
    if reveal_secret:
        # The full secret: no browser, proxy or client cache may keep a copy.
        response["Cache-Control"] = "no-store"
    return response


@extend_schema(
    methods=["GET"], parameters=PAGE_PARAMS, responses=WebhookList, operation_id="webhooks_list"
)
@extend_schema(
    methods=["POST"],
    request=WebhookInput,
    responses={201: WebhookEnvelope},
    operation_id="webhooks_create",
    description="Create a webhook. `secret` is generated when absent; it is shown in full "
    "only in this response.",
)
@api_view(["GET", "POST"])
def webhooks(request: Request) -> Response:
    if request.method == "POST":
        return _create(request)
    check_params(
        request,
        WEBHOOK_LIST_PARAMS,
        {"before": "This list is paged by number: send `page` (from 1) and `size`."},
    )
    page, size = page_params(request)
    qs = _endpoints_for(request).order_by("-created_at", "-id")
    total = qs.count()
    items = qs[(page - 1) * size : page * size]
    return Response(
        {
            "webhooks": WebhookOutput(items, many=True).data,
            "pagination": {"page": page, "size": size, "total": total},
        }
    )


@extend_schema(
    request=WebhookInput,
    responses={201: WebhookEnvelope},
    operation_id="webhook_create_alias",
    description="SalesPlay's singular path: the same as POST /api/v1/webhooks.",
)
@api_view(["POST"])
def webhook_alias(request: Request) -> Response:
    return _create(request)


def _create(request: Request) -> Response:
    form = WebhookInput(data=request.data)
    form.is_valid(raise_exception=True)
    merchant = merchant_of(request)
    try:
        with limits.adding(merchant, "webhooks"):
            endpoint = form.create_for(merchant)
    except limits.LimitReached as exc:
        raise ApiError(403, "limit_reached", str(exc)) from None
    return _one(endpoint, reveal_secret=True, code=status.HTTP_201_CREATED)


@extend_schema(methods=["GET"], responses=WebhookEnvelope, operation_id="webhooks_retrieve")
@extend_schema(
    methods=["PATCH"],
    request=WebhookInput(partial=True),
    responses=WebhookEnvelope,
    operation_id="webhooks_update",
    description="Change any subset of fields, e.g. `is_active=false` to disable.",
)
@extend_schema(methods=["DELETE"], responses={204: None}, operation_id="webhooks_destroy")
@api_view(["GET", "PATCH", "DELETE"])
def webhook(request: Request, public_id: str) -> Response:
    endpoint = _get_endpoint_for_key(request, public_id)
    if request.method == "DELETE":
        endpoint.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
    if request.method == "PATCH":
        form = WebhookInput(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        form.save_to(endpoint)
        endpoint = _get_endpoint_for_key(request, public_id)
        return _one(endpoint, reveal_secret="secret" in form.validated_data)
    return _one(endpoint)


TestResult = inline_serializer(
    "TestResult",
    {
        "test": inline_serializer(
            "TestOutcome",
            {
                "delivery_id": serializers.CharField(),
                "event_id": serializers.CharField(),
                "succeeded": serializers.BooleanField(),
                "status": serializers.IntegerField(allow_null=True),
                "duration_ms": serializers.IntegerField(allow_null=True),
                "error": serializers.CharField(),
                "response_body": serializers.CharField(),
            },
        )
    },
)


class TestInput(serializers.Serializer):
    event_type = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="Send the data of your latest event of this type instead of the sample.",
    )


@extend_schema(
    request=TestInput,
    responses=TestResult,
    operation_id="webhooks_test",
    description="Send a `webhook.test` event now and answer with the receiver's response. "
    "With `event_type`, its data is that of your latest real event of that type (400 when "
    "there is none).",
)
@api_view(["POST"])
# Multipart too: a bare POST from an HTTP library that defaults to it keeps working.
@parser_classes([JSONParser, FormParser, MultiPartParser])
def webhook_test(request: Request, public_id: str) -> Response:
    """Send a `webhook.test` event now and answer with the receiver's response."""
    endpoint = _get_endpoint_for_key(request, public_id)
    if not endpoint.is_enabled:
        # Refused, not queued: a disabled webhook gets nothing, so a test would wait forever.
        raise ApiError(
            409, "webhook_disabled", "This webhook is disabled: enable it to send a test."
        )
    form = TestInput(data=request.data)
    form.is_valid(raise_exception=True)
    type_name = form.validated_data.get("event_type", "")
    try:
        with outbound.merchant_slot(endpoint.merchant):
            delivery = send_tests.send_test(endpoint, type_name)
    except send_tests.NotAllowedHere as exc:
        raise ApiError(400, "invalid_request", str(exc), {"payload_url": str(exc)}) from None
    except send_tests.NoEventYet as exc:
        raise ApiError(400, "invalid_request", str(exc), {"event_type": str(exc)}) from None
    except outbound.Busy as exc:
        raise busy_error(exc) from None
    attempt = delivery.attempt_log.first()
    return Response(
        {
            "test": {
                "delivery_id": delivery.public_id,
                "event_id": delivery.event.public_id,
                "succeeded": delivery.status == delivery.Status.SUCCEEDED,
                "status": delivery.last_status_code,
                "duration_ms": delivery.last_duration_ms,
                "error": delivery.last_error,
                "response_body": attempt.response_body[:2000] if attempt else "",
            }
        }
    )


@extend_schema(request=None, responses=WebhookEnvelope, operation_id="webhooks_rotate_secret")
@api_view(["POST"])
def webhook_rotate_secret(request: Request, public_id: str) -> Response:
    """Replace the secret; the old one keeps signing beside it for 24 hours."""
    endpoint = _get_endpoint_for_key(request, public_id)
    endpoint.rotate_secret()
    return _one(endpoint, reveal_secret=True)


@extend_schema(
    request=RecoverInput,
    responses={202: inline_serializer("Recovered", {"recovered": serializers.IntegerField()})},
    operation_id="webhooks_recover",
)
@api_view(["POST"])
def webhook_recover(request: Request, public_id: str) -> Response:
    """Retry every failed delivery of this webhook created since `since`."""
    endpoint = _get_endpoint_for_key(request, public_id)
    form = RecoverInput(data=request.data)
    form.is_valid(raise_exception=True)
    return accepted({"recovered": retry_failed(endpoint, since=form.validated_data["since"])})


Replayed = inline_serializer(
    "Replayed",
    {"count": serializers.IntegerField(), "dry_run": serializers.BooleanField()},
)


@extend_schema(
    request=ReplayInput,
    responses={200: Replayed, 202: Replayed},
    operation_id="webhooks_replay",
    description="Send this webhook the merchant's past events since `since`: every stored "
    "event it subscribes to (optionally only `event_types`) that it was not sent yet, in "
    "event order, at the webhook's own pace. Asking twice sends nothing twice. `dry_run` "
    "answers 200 with the count and sends nothing; otherwise 202 with the count sent.",
)
@api_view(["POST"])
def webhook_replay(request: Request, public_id: str) -> Response:
    endpoint = _get_endpoint_for_key(request, public_id)
    form = ReplayInput(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    if not endpoint.is_enabled and not data["dry_run"]:
        raise ApiError(
            409, "webhook_disabled", "This webhook is disabled: enable it to send past events."
        )
    try:
        if data["dry_run"]:
            count = count_missing(endpoint, data["since"], data["event_types"])
            return Response({"count": count, "dry_run": True})
        count = replay(endpoint, data["since"], data["event_types"])
    except ReplayRefused as exc:
        raise ApiError(400, "invalid_request", str(exc), {exc.field: str(exc)}) from None
    return accepted({"count": count, "dry_run": False})
