"""Validation shared by the dashboard forms, the API and the models.

Each function raises django's ValidationError with the message a merchant sees on the
field (or in the API's `fields`), so the rules live in one place.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError

from deliveries import http, signing


def validate_webhook_url(url: str) -> None:
    """http(s) only, well-formed, https unless the operator allows http, public address."""
    try:
        http.check_url(url, require_https=settings.WEBHOOK_REQUIRE_HTTPS)
    except ValueError as exc:
        raise ValidationError(str(exc), code="invalid_url") from None


def validate_secret(secret: str) -> None:
    try:
        signing.validate_secret(secret)
    except ValueError as exc:
        raise ValidationError(str(exc), code="weak_secret") from None
