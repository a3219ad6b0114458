"""/api/v1/merchants: the POS platform's operator creates, lists, changes and deletes merchants.

Only an operator key reaches these paths (`accounts.api.IsOperator`). The list is keyset
paginated by the merchants' creation order; `POST` honours an `Idempotency-Key`, so a back
office that lost the answer can retry without creating the merchant twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes, permission_classes
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import portal
from accounts.api import ApiError, IsOperator, JSONParser, check_params, limit_param
from accounts.models import Merchant, OperatorRequestKey

IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
LIMIT_NAMES = Merchant.LIMITS
LIST_PARAMS = {"after", "limit", "size", "external_id"}


class _Timestamp(serializers.DateTimeField):
    """UTC to the millisecond with a Z, as every other time in the API."""

    def to_representation(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextField(serializers.CharField):
    """A string, not a number made into one: `"external_id": 42` is a 400, not "42"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.")
        return super().to_internal_value(data)


class MerchantLimits(serializers.Serializer):
    webhooks = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    api_keys = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    inspectors = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    one_off_per_hour = serializers.IntegerField(min_value=0, allow_null=True, required=False)


class MerchantInput(serializers.Serializer):
    name = TextField(max_length=200)
    external_id = TextField(
        max_length=200,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Your back office's id for this merchant; unique across your merchants.",
    )
    contact_email = serializers.EmailField(
        required=False,
        allow_blank=True,
        help_text="Where failure alerts go; empty means every member's e-mail.",
    )
    limits = MerchantLimits(
        required=False, help_text="Per-merchant limits; null means the platform's default."
    )

    def validate_external_id(self, value: str | None) -> str | None:
        return value or None


class MerchantOutput(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    external_id = serializers.CharField(allow_null=True)
    contact_email = serializers.CharField(source="notification_email")
    limits = serializers.SerializerMethodField()
    created_at = _Timestamp()

    def get_limits(self, merchant: Merchant) -> dict[str, int | None]:
        return {name: getattr(merchant, f"max_{name}") for name in LIMIT_NAMES}


MerchantEnvelope = inline_serializer("MerchantEnvelope", {"merchant": MerchantOutput()})
MerchantList = inline_serializer(
    "MerchantList",
    {
        "merchants": MerchantOutput(many=True),
        "has_more": serializers.BooleanField(),
        "next_cursor": serializers.CharField(allow_null=True),
    },
)
KEY_PARAM = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": _KEY_RE.pattern},
    location=OpenApiParameter.HEADER,
    description="Optional. A retry with the same key and the same body within 24 hours gets "
    "the merchant created the first time (201 again, `Idempotent-Replayed: true`); the same "
    "key with another body is a 409.",
)


def _apply(merchant: Merchant, data: dict[str, Any]) -> None:
    if "name" in data:
        merchant.name = data["name"]
    if "external_id" in data:
        merchant.external_id = data["external_id"]
    if "contact_email" in data:
        merchant.notification_email = data["contact_email"]
    for name, value in data.get("limits", {}).items():
        setattr(merchant, f"max_{name}", value)


def _one(merchant: Merchant, code: int = 200) -> Response:
    return Response({"merchant": MerchantOutput(merchant).data}, status=code)


def _taken(external_id: str | None) -> ApiError:
    message = f"Another merchant already has external_id {external_id!r}."
    return ApiError(409, "conflict", message, {"external_id": message})


def _save(merchant: Merchant) -> None:
    """Save, answering 409 when the external id is taken (checked by the unique constraint)."""
    try:
        with transaction.atomic():
            merchant.save()
    except IntegrityError:
        raise _taken(merchant.external_id) from None


@extend_schema(
    methods=["GET"],
    parameters=[
        OpenApiParameter(
            "after", str, description="The previous page's `next_cursor` (a merchant id)."
        ),
        OpenApiParameter("external_id", str, description="Only the merchant with this id."),
        OpenApiParameter("limit", int, description="Items per page: 1 to 100 (default 20)."),
        OpenApiParameter("size", int, description="The same as `limit`."),
    ],
    responses=MerchantList,
    operation_id="merchants_list",
    description="Every merchant, oldest first, paged with a cursor. Operator key only.",
)
@extend_schema(
    methods=["POST"],
    request=MerchantInput,
    parameters=[KEY_PARAM],
    responses={201: MerchantEnvelope},
    operation_id="merchants_create",
    description="Create a merchant. Operator key only.",
)
@api_view(["GET", "POST"])
@permission_classes([IsOperator])
def merchants(request: Request) -> Response:
    if request.method == "POST":
        return _create(request)
    check_params(request, LIST_PARAMS)
    limit = limit_param(request)
    qs: QuerySet[Merchant] = Merchant.objects.tenants().order_by("id")
    external_id = request.query_params.get("external_id")
    if external_id:
        qs = qs.filter(external_id=external_id)
    after = request.query_params.get("after")
    if after:
        start = (
            Merchant.objects.tenants().filter(public_id=after).values_list("pk", flat=True).first()
        )
        if start is None:
            message = f"No merchant with id {after!r}: send the previous page's next_cursor."
            raise ApiError(400, "invalid_request", message, {"after": message})
        qs = qs.filter(pk__gt=start)
    rows = list(qs[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    return Response(
        {
            "merchants": MerchantOutput(rows, many=True).data,
            "has_more": has_more,
            "next_cursor": rows[-1].public_id if has_more else None,
        }
    )


def _fingerprint(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _create(request: Request) -> Response:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not _KEY_RE.match(key):
        message = "Idempotency-Key must be 1 to 255 visible ASCII characters."
        raise ApiError(400, "invalid_request", message, {IDEMPOTENCY_HEADER: message})
    form = MerchantInput(data=request.data)
    form.is_valid(raise_exception=True)
    data = dict(form.validated_data)
    if key is None:
        merchant = Merchant()
        _apply(merchant, data)
        _save(merchant)
        return _one(merchant, status.HTTP_201_CREATED)
    fingerprint = _fingerprint(data)
    replay = _known(key, fingerprint)
    if replay is not None:
        return replay
    merchant = Merchant()
    _apply(merchant, data)
    try:
        with transaction.atomic():
            merchant.save()
            OperatorRequestKey.objects.create(key=key, fingerprint=fingerprint, merchant=merchant)
    except IntegrityError:
        # Either a request with the same key won a race (answer with its merchant), or the
        # external id is taken.
        replay = _known(key, fingerprint)
        if replay is not None:
            return replay
        raise _taken(merchant.external_id) from None
    response = _one(merchant, status.HTTP_201_CREATED)
    response["Idempotent-Replayed"] = "false"
    return response


def _known(key: str, fingerprint: str) -> Response | None:
    """The answer for a key used in the last 24 hours, or None (an older one is forgotten)."""
    known = OperatorRequestKey.objects.select_related("merchant").filter(key=key).first()
    if known is None:
        return None
    if known.created_at < timezone.now() - timedelta(seconds=OperatorRequestKey.TTL_SECONDS):
        known.delete()
        return None
    if known.fingerprint != fingerprint:
        message = "This Idempotency-Key was used in the last 24 hours with a different request."
        raise ApiError(409, "idempotency_conflict", message, {IDEMPOTENCY_HEADER: message})
    response = _one(known.merchant, status.HTTP_201_CREATED)
    response["Idempotent-Replayed"] = "true"
    return response


def get_merchant_for_operator(public_id: str) -> Merchant:
    return get_object_or_404(Merchant.objects.tenants(), public_id=public_id)


@extend_schema(methods=["GET"], responses=MerchantEnvelope, operation_id="merchants_retrieve")
@extend_schema(
    methods=["PATCH"],
    request=MerchantInput(partial=True),
    responses=MerchantEnvelope,
    operation_id="merchants_update",
    description="Change any subset of fields; a limit set to null goes back to the default.",
)
@extend_schema(
    methods=["DELETE"],
    responses={204: None},
    operation_id="merchants_destroy",
    description="Delete the merchant with its users, keys, webhooks, events and deliveries.",
)
@api_view(["GET", "PATCH", "DELETE"])
@permission_classes([IsOperator])
def merchant(request: Request, public_id: str) -> Response:
    found = get_merchant_for_operator(public_id)
    if request.method == "DELETE":
        found.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
    if request.method == "PATCH":
        form = MerchantInput(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        _apply(found, dict(form.validated_data))
        _save(found)
        found.refresh_from_db()
    return _one(found)


class PortalLinkInput(serializers.Serializer):
    expires_in_minutes = serializers.IntegerField(
        required=False,
        default=portal.DEFAULT_LINK_MINUTES,
        min_value=1,
        max_value=portal.MAX_LINK_MINUTES,
        help_text="How long the link may be opened: 1 to 60 minutes (default 5).",
    )
    session_minutes = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=7 * 24 * 60,
        help_text="How long the dashboard session lasts (default PORTAL_SESSION_MINUTES).",
    )
    embed = serializers.BooleanField(
        required=False,
        default=False,
        help_text="A layout without the top navigation, for an iframe in your back office "
        "(allowed only for the origins in PORTAL_FRAME_ANCESTORS). `?embed=1` does the same.",
    )


PortalLinkOutput = inline_serializer(
    "PortalLink",
    {
        "url": serializers.URLField(),
        "expires_at": _Timestamp(),
        "embed": serializers.BooleanField(),
    },
)


@extend_schema(
    request=PortalLinkInput,
    parameters=[OpenApiParameter("embed", str, description="`1` for an embeddable session.")],
    responses={201: PortalLinkOutput},
    operation_id="merchants_portal_links_create",
    description="A one-time link that signs a browser into this merchant's dashboard without "
    "a password. Operator key only; rate limited per merchant (PORTAL_LINK_RATE_LIMIT).",
)
@api_view(["POST"])
@permission_classes([IsOperator])
# Multipart too: a bare POST from an HTTP library that defaults to it keeps working.
@parser_classes([JSONParser, FormParser, MultiPartParser])
def portal_links(request: Request, public_id: str) -> Response:
    found = get_merchant_for_operator(public_id)
    check_params(request, {"embed"})
    form = PortalLinkInput(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    embed = data["embed"] or request.query_params.get("embed") in ("1", "true")
    if embed and not settings.PORTAL_FRAME_ANCESTORS:
        message = "Embedding is off: set PORTAL_FRAME_ANCESTORS to the origins of your back office."
        raise ApiError(400, "invalid_request", message, {"embed": message})
    limit, window = settings.PORTAL_LINK_RATE_LIMIT
    allowed, wait = portal.within_rate(f"issue:{found.pk}", limit, window)
    if not allowed:
        message = f"At most {limit} sign-in links per merchant every {window} seconds."
        raise ApiError(429, "rate_limited", message, retry_after=wait)
    link, url = portal.issue(
        found,
        minutes=data["expires_in_minutes"],
        embed=embed,
        session_minutes=data.get("session_minutes"),
        operator=request.auth.operator,
    )
    response = Response(
        {"url": url, "expires_at": _Timestamp().to_representation(link.expires_at), "embed": embed},
        status=status.HTTP_201_CREATED,
    )
    response["Cache-Control"] = "no-store"
    return response
