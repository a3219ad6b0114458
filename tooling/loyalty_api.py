"""/api/v1/loyalty/*: the POS calls its external loyalty app through us (DealPOS's
External Loyalty App: Fetch Member Point, Order Complete, Validate Coupon).

One view function per action, so each is its own operation in the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.decorators import api_view, parser_classes
from rest_framework.request import Request

from accounts import outbound
from accounts.api import ApiError, JSONParser, PayloadTooLarge, busy_error, merchant_of
from accounts.api_schema import ERROR_SCHEMA
from endpoints.validators import check_allowed_port
from tooling import loyalty
from tooling.models import LoyaltyAction, LoyaltyApp

# Shapes the DealPOS guide implies; the app defines its own, we forward any JSON object.
EXAMPLES = {
    LoyaltyAction.FETCH_MEMBER_POINT: {"member_code": "M-000123", "phone": "+6281234567890"},
    LoyaltyAction.ORDER_COMPLETE: {
        "member_code": "M-000123",
        "invoice_number": "INV-1001",
        "outlet": "Main",
        "total": 125000,
        "items": [{"code": "SKU-1", "quantity": 2, "price": 62500}],
    },
    LoyaltyAction.VALIDATE_COUPON: {"member_code": "M-000123", "coupon_code": "WELCOME10"},
}
PURPOSE = {
    LoyaltyAction.FETCH_MEMBER_POINT: "get a member's points from the loyalty app",
    LoyaltyAction.ORDER_COMPLETE: "get the reward for a transaction created in the POS",
    LoyaltyAction.VALIDATE_COUPON: "check that a coupon exists in the loyalty app",
}


def _get_app_for_key(request: Request, action: LoyaltyAction) -> LoyaltyApp:
    """The caller's loyalty app with `action` enabled, or 404."""
    app = LoyaltyApp.objects.select_related("merchant").filter(merchant=merchant_of(request))
    found = app.first()
    if found is None:
        raise ApiError(
            404, "not_found", "No loyalty app is connected: set one up on the External apps page."
        )
    if not found.enables(action):
        raise ApiError(404, "not_found", f"{action.label} is not enabled for your loyalty app.")
    return found


def _json_object_body(request: Request) -> bytes:
    limit = settings.MAX_EVENT_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise PayloadTooLarge(limit)
    body = request.body
    if len(body) > limit:
        raise PayloadTooLarge(limit)
    if not body.strip() or not isinstance(request.data, dict):
        message = "Send a JSON object as the body."
        raise ApiError(400, "invalid_request", message, {"non_field_errors": message})
    return body


def _call(request: Request, action: LoyaltyAction) -> HttpResponse:
    app = _get_app_for_key(request, action)
    body = _json_object_body(request)
    try:
        check_allowed_port(app.url)
    except ValueError as exc:
        raise ApiError(502, "loyalty_app_unreachable", f"Not sent: {exc}") from None
    try:
        with outbound.merchant_slot(app.merchant):
            outcome = loyalty.call(app, LoyaltyAction(action), body)
    except outbound.Busy as exc:
        raise busy_error(exc) from None
    if not outcome.ok:
        raise ApiError(outcome.status, outcome.error_code, outcome.message)
    if outcome.status == 204:
        return HttpResponse(status=204)
    return HttpResponse(outcome.raw, status=outcome.status, content_type="application/json")


def _view(action: LoyaltyAction) -> Callable[..., HttpResponse]:
    def view(request: Request) -> HttpResponse:
        return _call(request, action)

    # Named before decorating: DRF names its view class after the function.
    view.__name__ = view.__qualname__ = f"loyalty_{action.value.replace('-', '_')}"
    wrapped = api_view(["POST"])(parser_classes([JSONParser])(view))
    return extend_schema(
        operation_id=view.__name__,
        summary=action.label,
        description=(
            f"{action.label}: {PURPOSE[action]}. The JSON body is forwarded unchanged to the "
            "merchant's loyalty app (signed with Standard Webhooks headers, with "
            f"`loyalty-action: {action.value}`), and the app's JSON answer comes back with "
            "the app's own status code. 404 when no app is connected or this action is not "
            "enabled; 504 when the app does not answer within its timeout; 502 when it "
            "cannot be reached or does not answer JSON."
        ),
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiResponse(
                OpenApiTypes.ANY,
                description="The loyalty app's JSON answer. The status is the app's own, "
                "so the app's 4xx and 5xx answers come back as they are, with its body.",
            ),
            204: OpenApiResponse(None, description="The app answered 204 No Content."),
            502: OpenApiResponse(
                ERROR_SCHEMA,
                description="The app could not be reached, or answered without JSON "
                "(`loyalty_app_unreachable`, `loyalty_app_bad_answer`).",
            ),
            504: OpenApiResponse(
                ERROR_SCHEMA,
                description="The app did not answer within its timeout "
                "(`loyalty_app_timeout`; the call log shows 408).",
            ),
        },
        examples=[OpenApiExample(action.label, value=EXAMPLES[action], request_only=True)],
    )(wrapped)


fetch_member_point = _view(LoyaltyAction.FETCH_MEMBER_POINT)
order_complete = _view(LoyaltyAction.ORDER_COMPLETE)
validate_coupon = _view(LoyaltyAction.VALIDATE_COUPON)
