"""/api/v1/operator-webhooks: the platform operator's own webhooks, for operational events.

They are endpoints of the operator's own merchant row (`Merchant.objects.platform()`), so
the same engine signs and delivers to them; staff may also add them in the admin under the
merchant "Platform operator". Operator key only.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import IsOperator, check_params
from accounts.models import Merchant
from catalogue.models import Category, EventType
from catalogue.seed import PLATFORM_CATEGORY
from endpoints.models import Endpoint
from endpoints.serializers import WebhookOutput
from endpoints.validators import validate_webhook_url


class OperatorWebhookInput(serializers.Serializer):
    url = serializers.CharField(max_length=2048, help_text="Where operational events go.")
    events = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        default=list,
        help_text="Operational event types (endpoint.failing, endpoint.disabled, ...); "
        "empty means all of them.",
    )
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)

    def validate_url(self, value: str) -> str:
        try:
            validate_webhook_url(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages[0]) from None
        return value

    def validate_events(self, value: list[str]) -> list[str]:
        known = set(
            EventType.objects.filter(
                name__in=value, category__slug=PLATFORM_CATEGORY, is_active=True
            ).values_list("name", flat=True)
        )
        for name in value:
            if name not in known:
                raise serializers.ValidationError(
                    f"{name!r} is not an operational event type. See GET /api/v1/event-types "
                    f"(category {PLATFORM_CATEGORY!r})."
                )
        return sorted(set(value))


OperatorWebhookEnvelope = inline_serializer("OperatorWebhookEnvelope", {"webhook": WebhookOutput()})
OperatorWebhookList = inline_serializer(
    "OperatorWebhookList", {"webhooks": WebhookOutput(many=True)}
)


def _operator_endpoints() -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(merchant__is_platform=True).prefetch_related("event_types")


@extend_schema(
    methods=["GET"], responses=OperatorWebhookList, operation_id="operator_webhooks_list"
)
@extend_schema(
    methods=["POST"],
    request=OperatorWebhookInput,
    responses={201: OperatorWebhookEnvelope},
    operation_id="operator_webhooks_create",
    description="Add a webhook for operational events about every merchant's webhooks. The "
    "signing secret is shown in full only in this response.",
)
@api_view(["GET", "POST"])
@permission_classes([IsOperator])
def operator_webhooks(request: Request) -> Response:
    if request.method == "GET":
        check_params(request, set())
        endpoints = _operator_endpoints().order_by("created_at", "id")
        return Response({"webhooks": WebhookOutput(endpoints, many=True).data})
    form = OperatorWebhookInput(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    with transaction.atomic():
        endpoint = Endpoint.objects.create(
            merchant=Merchant.objects.platform(),
            url=data["url"],
            description=data.get("description", ""),
            category=Category.objects.filter(slug=PLATFORM_CATEGORY).first(),
        )
        endpoint.event_types.set(EventType.objects.filter(name__in=data["events"]))
    body = WebhookOutput(endpoint, context={"reveal_secret": True}).data
    response = Response({"webhook": body}, status=status.HTTP_201_CREATED)
    response["Cache-Control"] = "no-store"
    return response


@extend_schema(
    methods=["GET"], responses=OperatorWebhookEnvelope, operation_id="operator_webhooks_retrieve"
)
@extend_schema(methods=["DELETE"], responses={204: None}, operation_id="operator_webhooks_destroy")
@api_view(["GET", "DELETE"])
@permission_classes([IsOperator])
def operator_webhook(request: Request, public_id: str) -> Response:
    endpoint = get_object_or_404(_operator_endpoints(), public_id=public_id)
    if request.method == "DELETE":
        endpoint.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response({"webhook": WebhookOutput(endpoint).data})
