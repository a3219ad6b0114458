"""Sending one delivery: sign it for this moment and POST it through the one HTTP module.

`attempt_async` runs on a worker's event loop (the pump's sending core, `lib.http.aio`);
`attempt` is the same on the calling thread (a synchronous Send test). Neither touches the
database. Whatever the receiver does comes back as an `AttemptResult`; nothing it sends can
raise out of here.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from deliveries.results import AttemptResult
from lib import http, policy

if TYPE_CHECKING:
    from deliveries.models import Delivery
    from lib.http.aio import AsyncClient

__all__ = ["AttemptResult", "attempt", "attempt_async", "unsent"]

log = logging.getLogger(__name__)


def attempt(delivery: Delivery) -> AttemptResult:
    """Send a delivery once, on this thread, and say what happened. Never raises.

    Args:
        delivery: a claimed delivery with its event and endpoint loaded.
    """
    try:
        result, timeout, started = _prepare(delivery)
        try:
            response = http.post(
                delivery.target_url, result.request_body, result.request_headers, timeout=timeout
            )
        except http.TransportError as exc:
            return _failed(result, exc, started)
        return _answered(result, response, started)
    except Exception as exc:  # a bug must not leave the delivery claimed until its lease ends
        return _crashed(delivery, exc)


async def attempt_async(delivery: Delivery, client: AsyncClient) -> AttemptResult:
    """Send a delivery once on the worker's event loop and say what happened. Never raises.

    Args:
        delivery: a claimed delivery with its event and endpoint loaded.
        client: the event loop's HTTP client.
    """
    try:
        result, timeout, started = _prepare(delivery)
        try:
            response = await client.post(
                delivery.target_url, result.request_body, result.request_headers, timeout=timeout
            )
        except http.TransportError as exc:
            return _failed(result, exc, started)
        return _answered(result, response, started)
    except Exception as exc:  # a bug must not leave the delivery claimed until its lease ends
        return _crashed(delivery, exc)


def _prepare(delivery: Delivery) -> tuple[AttemptResult, float, float]:
    body, headers = delivery.build_request()
    timeout = float(delivery.endpoint.timeout_seconds if delivery.endpoint_id else http.MAX_TIMEOUT)
    result = AttemptResult(delivery=delivery, request_body=body, request_headers=headers)
    return result, timeout, time.monotonic()


def _failed(result: AttemptResult, exc: http.TransportError, started: float) -> AttemptResult:
    result.status = exc.status
    result.error = exc.message
    result.permanent = exc.permanent
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def _answered(result: AttemptResult, response: http.HttpResult, started: float) -> AttemptResult:
    result.answered = True
    result.status = response.status
    result.response_headers = {k.lower(): v for k, v in response.headers.items()}
    result.response_body = response.body
    result.truncated = response.truncated
    if not policy.is_success(response.status):
        result.error = f"HTTP {response.status}"
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def _crashed(delivery: Delivery, exc: Exception) -> AttemptResult:
    log.exception("delivery %s crashed", delivery.public_id)
    return AttemptResult(
        delivery=delivery, request_body=b"", request_headers={}, error=f"internal error: {exc}"
    )


def unsent(delivery: Delivery, reason: str) -> AttemptResult:
    """The result of a claim given back without sending (its lease could have run out)."""
    return AttemptResult(
        delivery=delivery, request_body=b"", request_headers={}, error=reason, sent=False
    )
