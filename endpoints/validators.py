"""Validation shared by the dashboard forms, the API and the models.

Each function raises django's ValidationError with the message a merchant sees on the
field (or in the API's `fields`), so the rules live in one place.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from lib import custom_headers, filters, http, signing

_DEFAULT_PORTS = {"http": 80, "https": 443}


def validate_webhook_url(url: str) -> None:
    """http(s) only, well-formed, https unless the operator allows http, public address,
    and on an allowed port when the address is one WEBHOOK_ALLOWED_NETWORKS opens."""
    try:
        http.check_url(url, require_https=settings.WEBHOOK_REQUIRE_HTTPS)
        check_allowed_port(url)
    except ValueError as exc:
        raise ValidationError(str(exc), code="invalid_url") from None


def check_allowed_port(url: str) -> None:
    """With WEBHOOK_ALLOWED_PORTS set, a non-public address is usable on those ports only.

    `make run` opens this machine's address so the demo can send to its own inspector; this
    keeps every other local service (Redis, databases, admin consoles) out of reach. Checked
    when a URL is saved and again right before a test send or a loyalty call.

    Raises:
        ValueError: with a message for the merchant.
    """
    ports = settings.WEBHOOK_ALLOWED_PORTS
    if not ports:
        return
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
    if port in ports:
        return
    try:
        addresses = http.resolve(parts.hostname or "", port)
    except OSError:
        raise ValueError("The host could not be resolved.") from None
    if not all(http.is_public_address(ip) for ip in addresses):
        allowed = ", ".join(str(p) for p in ports)
        raise ValueError(
            f"This address may only be used on port {allowed} here (the inspector's own)."
        )


def validate_secret(secret: str) -> None:
    try:
        signing.validate_secret(secret)
    except ValueError as exc:
        raise ValidationError(str(exc), code="weak_secret") from None


def parse_filter(value: Any) -> dict[str, Any] | None:
    """A webhook's filter from the API or the form: an object, the JSON text of one, or
    empty (None, "", {}) for no filter.

    Raises:
        ValidationError: not JSON, or a filter lib.filters refuses (the message names the
            bad operator or path).
    """
    if isinstance(value, str):
        value = _json_text(value, "filter", filters.MAX_FILTER_BYTES)
    if value is None or value == {}:
        return None
    try:
        filters.compile_filter(value)
    except filters.FilterError as exc:
        raise ValidationError(str(exc), code="invalid_filter") from None
    return value


def parse_headers(value: Any) -> dict[str, str]:
    """Custom headers from the API or the form: an object of name -> value, a list of
    {"name", "value"}, the JSON text of either, or empty for none.

    Raises:
        ValidationError: not JSON, or headers lib.custom_headers refuses (naming the header).
    """
    if isinstance(value, str):
        value = _json_text(value, "headers", 64 * 1024)
    try:
        return custom_headers.validate_headers(value)
    except custom_headers.HeaderError as exc:
        raise ValidationError(str(exc), code="invalid_headers") from None


def _json_text(text: str, what: str, limit: int) -> Any:
    """JSON sent as a string (a form field), or None when blank."""
    if not text.strip():
        return None
    if len(text) > limit:
        raise ValidationError(f"The {what} may be at most {limit} characters of JSON.")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValidationError(f"The {what} is nested too deeply.") from None
    except ValueError as exc:
        raise ValidationError(
            f"The {what} is not valid JSON: {exc}.", code="invalid_json"
        ) from None
