"""Sending one delivery: sign it for this moment and POST it through the one HTTP module.

Runs on the pump's sender threads and touches no database. Whatever the receiver does comes
back as an `AttemptResult`; nothing it sends can raise out of here.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from deliveries.results import AttemptResult
from lib import http, policy

if TYPE_CHECKING:
    from deliveries.models import Delivery

__all__ = ["AttemptResult", "attempt", "unsent"]

log = logging.getLogger(__name__)


def attempt(delivery: Delivery) -> AttemptResult:
    """Send a delivery once and say what happened. Never raises.

    Args:
        delivery: a claimed delivery with its event and endpoint loaded.
    """
    try:
        return _attempt(delivery)
    except Exception as exc:  # a bug must not leave the delivery claimed until its lease ends
        log.exception("delivery %s crashed", delivery.public_id)
        return AttemptResult(
            delivery=delivery, request_body=b"", request_headers={}, error=f"internal error: {exc}"
        )


def _attempt(delivery: Delivery) -> AttemptResult:
    body, headers = delivery.build_request()
    timeout = float(delivery.endpoint.timeout_seconds if delivery.endpoint_id else http.MAX_TIMEOUT)
    started = time.monotonic()
    result = AttemptResult(delivery=delivery, request_body=body, request_headers=headers)
    try:
        response = http.post(delivery.target_url, body, headers, timeout=timeout)
    except http.TransportError as exc:
        result.status = exc.status
        result.error = exc.message
        result.permanent = exc.permanent
    else:
        result.answered = True
        result.status = response.status
        result.response_headers = {k.lower(): v for k, v in response.headers.items()}
        result.response_body = response.body
        result.truncated = response.truncated
        if not policy.is_success(response.status):
            result.error = f"HTTP {response.status}"
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def unsent(delivery: Delivery, reason: str) -> AttemptResult:
    """The result of a claim given back without sending (its lease could have run out)."""
    return AttemptResult(
        delivery=delivery, request_body=b"", request_headers={}, error=reason, sent=False
    )
