"""What every API view shares: bearer keys, one error shape, rate limits, pagination.

Errors always look like `{"error": {"code", "message", "fields": {...}}}`, whatever raised
them (validation, authentication, a missing object, the rate limiter or Django itself).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import RedisError
from rest_framework import exceptions, parsers, renderers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from accounts.models import (
    API_KEY_PREFIX,
    OPERATOR_KEY_PREFIX,
    ApiKey,
    Merchant,
    OperatorKey,
    merchant_for_oauth_token,
)
from lib import redis_client

if TYPE_CHECKING:
    # Imported lazily: DRF loads this module while rest_framework.views is initialising.
    from rest_framework.views import APIView

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


# --- errors ------------------------------------------------------------------------------


class ApiError(exceptions.APIException):
    """An error with our code and message, e.g. ApiError(409, "not_retryable", "...")."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        fields: dict | None = None,
        *,
        retry_after: int | None = None,
    ):
        super().__init__(message, code)
        self.status_code = status_code
        self.error_code = code
        self.fields = fields or {}
        self.retry_after = retry_after


class PayloadTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, "payload_too_large", f"The request body is larger than {limit // 1024} KiB."
        )


def busy_error(exc: Exception) -> ApiError:
    """429 for an outbound call refused because the merchant has too many in flight."""
    return ApiError(
        429, "too_many_outbound_calls", str(exc), retry_after=getattr(exc, "retry_after", 5)
    )


def error_body(code: str, message: str, fields: dict | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _flatten(detail: Any) -> Any:
    """DRF's nested ErrorDetail lists, as plain messages per field."""
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        flat = [_flatten(item) for item in detail]
        return flat if len(flat) != 1 or isinstance(flat[0], dict) else flat[0]
    return str(detail)


_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error in our one JSON shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("No such object.")
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if not isinstance(exc, exceptions.APIException):
        return None
    headers: dict[str, str] = {}
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
    if isinstance(exc, ApiError) and exc.retry_after:
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    status_code = exc.status_code
    if isinstance(exc, ApiError):
        body = error_body(exc.error_code, str(exc.detail), exc.fields)
    elif isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if not isinstance(fields, dict):
            fields = {"non_field_errors": fields}
        first = next(iter(fields.items()), ("", "Invalid input."))
        message = f"{first[0]}: {first[1]}" if first[0] != "non_field_errors" else str(first[1])
        body = error_body("invalid_request", message, fields)
    else:
        code = _CODES.get(exc.status_code, "error")
        body = error_body(code, str(exc.detail))
    return Response(body, status=status_code, headers=headers)


def json_error(status_code: int, code: str, message: str) -> JsonResponse:
    """For errors raised outside DRF (URL not found under /api/, server errors)."""
    return JsonResponse(error_body(code, message), status=status_code)


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(404, "not_found", "No such API path.")


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the API's one JSON shape under /api/, the site's page elsewhere."""
    if is_api_request(request):
        return json_error(500, "server_error", "Something went wrong on our side; try again.")
    from django.views.defaults import server_error as page

    return page(request)


# --- rendering -------------------------------------------------------------------------


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer (UTF-8, unescaped), escaping everything when it must.

    Text stored from third parties (a loyalty app's answer, event data stored before lone
    surrogates were refused) may hold a lone surrogate, which UTF-8 cannot encode: that
    answer is written with \\u escapes instead, still valid JSON, instead of a 500.
    """

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            self.ensure_ascii = True
            return super().render(data, accepted_media_type, renderer_context)


# --- parsing ---------------------------------------------------------------------------


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing JSON nested deeper than MAX_JSON_DEPTH with a 400.

    Deeper input made Python's parser raise RecursionError, an HTML 500.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep() from None
        if json_depth(data, settings.MAX_JSON_DEPTH) > settings.MAX_JSON_DEPTH:
            raise too_deep()
        return data


def too_deep() -> exceptions.ParseError:
    return exceptions.ParseError(
        f"JSON parse error - nested deeper than {settings.MAX_JSON_DEPTH} levels."
    )


def json_depth(value: Any, stop: int) -> int:
    """How deeply `value` nests lists and objects, counting no further than `stop` + 1."""
    depth, level = 0, [value]
    while level and depth <= stop:
        children = []
        for item in level:
            if isinstance(item, dict):
                children.extend(item.values())
            elif isinstance(item, list):
                children.extend(item)
        if not children and not any(isinstance(i, dict | list) for i in level):
            break
        depth += 1
        level = children
    return depth


# --- authentication ----------------------------------------------------------------------


@dataclass(frozen=True)
class OAuthToken:
    """An OAuth 2.0 access token's grant: the one merchant its client belongs to."""

    merchant: Merchant


@dataclass(frozen=True)
class OperatorAccess:
    """An operator key, acting for the merchant named by `Merchant-Id` (None without one)."""

    operator: OperatorKey
    merchant: Merchant | None


MERCHANT_HEADER = "Merchant-Id"
_MERCHANT_META = "HTTP_MERCHANT_ID"
MERCHANT_REQUIRED = (
    "This path acts for one merchant: an operator key must name it in a Merchant-Id header "
    "(Merchant-Id: mrc_...)."
)


class BearerKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <API key, operator key or OAuth token>`.

    API keys start with `whk_`, operator keys with `whop_`; anything else is looked up as an
    OAuth access token. The merchant acted for is `request.auth.merchant`: a merchant key's
    own, or for an operator key the one its `Merchant-Id` header names.
    """

    def authenticate(
        self, request: Request
    ) -> tuple[Any, ApiKey | OAuthToken | OperatorAccess] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise exceptions.AuthenticationFailed(
                "Use an Authorization header of the form 'Bearer <API key or OAuth token>'."
            )
        named = request.META.get(_MERCHANT_META, "").strip()
        if token.startswith(OPERATOR_KEY_PREFIX):
            operator = OperatorKey.objects.authenticate(token)
            if operator is None:
                raise exceptions.AuthenticationFailed(
                    "The operator key is not valid or was revoked."
                )
            merchant = None
            if named:
                merchant = Merchant.objects.tenants().filter(public_id=named).first()
                if merchant is None:
                    raise _unknown_merchant(named)
            return (ApiKeyUser(f"operator:{operator.prefix}"), OperatorAccess(operator, merchant))
        if token.startswith(API_KEY_PREFIX):
            key = ApiKey.objects.authenticate(token)
            if key is None:
                raise exceptions.AuthenticationFailed("The API key is not valid or was revoked.")
            _check_own(named, key.merchant)
            return (ApiKeyUser(key.prefix), key)
        merchant = merchant_for_oauth_token(token)
        if merchant is None:
            raise exceptions.AuthenticationFailed(
                "The OAuth token is not valid or has expired: get a new one from "
                "POST /api/v1/oauth/token."
            )
        _check_own(named, merchant)
        return (ApiKeyUser("oauth"), OAuthToken(merchant))

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def _unknown_merchant(public_id: str) -> ApiError:
    message = f"No merchant with id {public_id!r}."
    return ApiError(404, "not_found", message, {MERCHANT_HEADER: message})


def _check_own(named: str, merchant: Merchant) -> None:
    """A merchant's key or token may name only its own merchant: any other does not exist."""
    if named and named != merchant.public_id:
        raise _unknown_merchant(named)


class ApiKeyUser:
    """The caller behind an API key or token: a merchant, not a person."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    def __init__(self, label: str) -> None:
        self.label = label
        self.pk = None

    def __str__(self) -> str:
        return f"api-key:{self.label}"


class HasApiKey(BasePermission):
    """A credential that acts for one merchant: a merchant's key or token, or an operator
    key with a `Merchant-Id`. An operator key without one is refused with a 400 saying so."""

    message = "Authentication required: send 'Authorization: Bearer <API key or OAuth token>'."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if isinstance(request.auth, OperatorAccess) and request.auth.merchant is None:
            raise ApiError(
                400, "merchant_required", MERCHANT_REQUIRED, {MERCHANT_HEADER: MERCHANT_REQUIRED}
            )
        return isinstance(request.auth, ApiKey | OAuthToken | OperatorAccess)


OPERATOR_REQUIRED = (
    "This path is the POS platform's: authenticate with an operator key "
    "(python manage.py create_operator_key NAME)."
)


class IsOperator(BasePermission):
    """An operator key; a merchant's key or token is refused with 403 (it is not lost)."""

    message = "Authentication required: send 'Authorization: Bearer <operator key>'."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if isinstance(request.auth, ApiKey | OAuthToken):
            raise ApiError(403, "operator_key_required", OPERATOR_REQUIRED)
        return isinstance(request.auth, OperatorAccess)


def merchant_of(request: Request) -> Merchant:
    return request.auth.merchant


# --- rate limiting -----------------------------------------------------------------------


class KeyRateThrottle(BaseThrottle):
    """A fixed-window counter per merchant in Redis (all its keys together): one INCR per
    request. Per key, every extra key a merchant made would have been more quota. Operator
    keys count apart, each against OPERATOR_API_RATE_LIMIT.

    It fails open: with Redis down the API keeps accepting events (they are stored in the
    database and delivered once Redis is back), it just cannot count for a while.
    """

    def allow_request(self, request: Request, view: APIView) -> bool:
        if isinstance(request.auth, OperatorAccess):
            # The platform's own budget, per operator key: acting for a merchant does not
            # spend that merchant's.
            limit, window = settings.OPERATOR_API_RATE_LIMIT
            scope = f"op{request.auth.operator.pk}"
        elif isinstance(request.auth, ApiKey | OAuthToken):
            limit, window = settings.API_RATE_LIMIT
            # One budget per merchant for all its keys and tokens.
            scope = f"m{request.auth.merchant.pk}"
        else:
            return True
        now = time.time()
        bucket = int(now // window)
        key = f"webhooks:ratelimit:{scope}:{bucket}"
        try:
            # No MULTI/EXEC: INCR alone is atomic, and an EXPIRE lost to a crash in between
            # only leaves a key that the next request's EXPIRE sets again.
            pipe = redis_client.connection().pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, window + 1)
            count = pipe.execute()[0]
        except RedisError as exc:
            log.warning("rate limiter unavailable (%s); allowing the request", exc)
            return True
        self._wait = (bucket + 1) * window - now
        return int(count) <= limit

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)


# --- pagination --------------------------------------------------------------------------


def int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """A whole-number query parameter within [lo, hi], or a clear 400."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            400, "invalid_request", f"{name} must be a whole number.", {name: "Not a whole number."}
        ) from None
    if not lo <= value <= hi:
        message = f"{name} must be between {lo} and {hi}."
        raise ApiError(400, "invalid_request", message, {name: message})
    return value


def _size(request: Request, name: str, alias: str) -> int:
    """Items per page from `name` or its `alias` (`limit` and `size` mean the same)."""
    value = int_param(request, name, None, 1, MAX_PAGE_SIZE)
    other = int_param(request, alias, None, 1, MAX_PAGE_SIZE)
    if value is not None and other is not None and value != other:
        message = f"{name} and {alias} mean the same: send one of them."
        raise ApiError(400, "invalid_request", message, {alias: message})
    if value is None:
        value = other
    return DEFAULT_PAGE_SIZE if value is None else value


def page_params(request: Request) -> tuple[int, int]:
    """`page` + `size` (myPOS's style); `limit` is taken for `size` too."""
    page = int_param(request, "page", 1, 1, 1_000_000)
    assert page is not None
    return page, _size(request, "size", "limit")


def limit_param(request: Request) -> int:
    """`limit` for the cursor-paged lists; `size` is taken for it too."""
    return _size(request, "limit", "size")


CURSOR_HINT = (
    "This list is paged with a cursor, not page numbers: send the previous page's "
    "`next_cursor` as `{cursor}`, and `limit` (or `size`) for the page size."
)


def check_params(request: Request, allowed: set[str], hints: dict[str, str] | None = None) -> None:
    """Answer 400 naming a query parameter this endpoint does not know.

    Ignoring it silently answered `/events?page=2` with page 1, which looks like success.
    """
    for name in request.query_params:
        if name in allowed:
            continue
        hint = (hints or {}).get(name) or f"Known parameters: {', '.join(sorted(allowed))}."
        message = f"Unknown query parameter '{name}'. {hint}"
        raise ApiError(400, "invalid_request", message, {name: message})


def accepted(body: dict[str, Any]) -> Response:
    return Response(body, status=status.HTTP_202_ACCEPTED)
