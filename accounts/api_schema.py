"""OpenAPI additions: our bearer keys, and the error responses every operation can give."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.BearerKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "API key (whk_...), OAuth token, or operator key (whop_...) with a "
            "Merchant-Id header",
        }


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": True},
            },
        }
    },
}

_ERRORS = {
    "400": "Invalid input: `error.fields` says what is wrong with which field.",
    "401": "Missing, malformed or revoked API key.",
    "403": "Not allowed: a merchant's key on the platform's paths (`operator_key_required`), "
    "or a per-merchant limit reached (`limit_reached`).",
    "404": "No such object (another merchant's objects do not exist for you).",
    "405": "Method not allowed on this path.",
    "409": "Conflict: the object is not in a state that allows this action, or an "
    "Idempotency-Key was used with a different request.",
    "413": "The request body is too large.",
    "429": "Rate limit exceeded; `Retry-After` says when to try again.",
}


def add_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: document our one error shape everywhere."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, description in _ERRORS.items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": ref}
                )
    return result


MERCHANT_HEADER_PARAMETER = {
    "in": "header",
    "name": "Merchant-Id",
    "required": False,
    "schema": {"type": "string"},
    "description": "With an operator key: the merchant (mrc_...) this request acts for; "
    "required with an operator key (400 `merchant_required` without it). A merchant's own key "
    "may only name its own merchant.",
}
# The platform's own paths: they act for no one merchant.
OPERATOR_PATH_PREFIXES = ("/api/v1/merchants", "/api/v1/operator-webhooks", "/api/v1/oauth/")


def add_merchant_header(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: `Merchant-Id` on every path that acts for one
    merchant."""
    for path, operations in result.get("paths", {}).items():
        if path.startswith(OPERATOR_PATH_PREFIXES):
            continue
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation.setdefault("parameters", []).append(MERCHANT_HEADER_PARAMETER)
    return result
