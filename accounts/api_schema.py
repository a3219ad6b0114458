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


# One line per operation, shown beside each path in the API reference (/api/docs/).
SUMMARIES = {
    ("post", "/api/v1/oauth/token"): "Get an access token (OAuth 2.0 client credentials)",
    ("get", "/api/v1/webhooks"): "List webhooks",
    ("post", "/api/v1/webhooks"): "Create a webhook",
    ("post", "/api/v1/webhook"): "Create a webhook (SalesPlay's path)",
    ("get", "/api/v1/webhooks/{public_id}"): "Get a webhook",
    ("patch", "/api/v1/webhooks/{public_id}"): "Change a webhook",
    ("delete", "/api/v1/webhooks/{public_id}"): "Delete a webhook",
    ("post", "/api/v1/webhooks/{public_id}/test"): "Send a test event to a webhook",
    ("post", "/api/v1/webhooks/{public_id}/rotate-secret"): "Rotate a webhook's signing secret",
    ("post", "/api/v1/webhooks/{public_id}/recover"): "Retry a webhook's failed deliveries",
    ("get", "/api/v1/events"): "List events",
    ("post", "/api/v1/events"): "Emit an event",
    ("post", "/api/v1/events/batch"): "Emit up to 100 events at once",
    ("get", "/api/v1/events/{public_id}"): "Get an event with its deliveries",
    ("get", "/api/v1/event-types"): "List event types",
    ("get", "/api/v1/deliveries"): "List deliveries",
    ("get", "/api/v1/deliveries/{public_id}"): "Get a delivery with its attempts",
    ("post", "/api/v1/deliveries/{public_id}/retry"): "Retry a delivery",
    ("post", "/api/v1/webhooks/{public_id}/replay"): "Send a webhook past events it never got",
    ("get", "/api/v1/merchants"): "List merchants (operator key)",
    ("post", "/api/v1/merchants"): "Create a merchant (operator key)",
    ("get", "/api/v1/merchants/{public_id}"): "Get a merchant (operator key)",
    ("patch", "/api/v1/merchants/{public_id}"): "Change a merchant (operator key)",
    ("delete", "/api/v1/merchants/{public_id}"): "Delete a merchant (operator key)",
    ("post", "/api/v1/merchants/{public_id}/portal-links"): "Make a one-time sign-in link",
    ("get", "/api/v1/operator-webhooks"): "List operational webhooks (operator key)",
    ("post", "/api/v1/operator-webhooks"): "Create an operational webhook (operator key)",
    ("get", "/api/v1/operator-webhooks/{public_id}"): "Get an operational webhook",
    ("delete", "/api/v1/operator-webhooks/{public_id}"): "Delete an operational webhook",
}


def add_summaries(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: a summary for every operation that has none."""
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and not operation.get("summary"):
                summary = SUMMARIES.get((method, path))
                if summary:
                    operation["summary"] = summary
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
