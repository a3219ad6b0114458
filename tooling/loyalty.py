"""Synchronous call-outs to a merchant's external loyalty app (DealPOS's External Loyalty App).

The POS system calls `POST /api/v1/loyalty/<action>`; the JSON body is forwarded as it came
to the app's URL, signed like a webhook, through the one outbound HTTP module and its SSRF
guard, and the app's JSON answer goes back to the POS with the app's status. The action is
named in the `loyalty-action` header, so one URL on the app's side serves all three.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from endpoints.models import Endpoint
from lib import http, policy, signing
from lib.ids import new_id
from tooling.models import LoyaltyAction, LoyaltyApp, LoyaltyCall

MAX_LOGGED_BODY = 64 * 1024
ACTION_HEADER = "loyalty-action"


@dataclass
class Outcome:
    """What the POS gets back: the app's answer, or one of our errors (`error_code` set)."""

    status: int
    data: Any = None
    raw: bytes = b""  # the app's JSON exactly as it answered, passed on unchanged
    error_code: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_code


def call(app: LoyaltyApp, action: LoyaltyAction, body: bytes) -> Outcome:
    """Forward one call to the app, log it by the app's log mode, and say what to answer.

    Args:
        app: the merchant's loyalty app; the caller has checked that `action` is enabled.
        action: which call-out this is.
        body: the JSON body the POS sent, forwarded byte for byte.

    Returns:
        The outcome: the app's JSON and status, 504 on a timeout (logged as 408, as DealPOS
        does), or 502 when the app cannot be reached or does not answer JSON.
    """
    message_id = new_id("msg")
    headers = {"content-type": "application/json", ACTION_HEADER: action.value}
    headers.update(
        signing.headers([signing.secret_key(app.secret)], message_id, int(time.time()), body)
    )
    log = LoyaltyCall(
        merchant=app.merchant,
        action=action,
        message_id=message_id,
        url=http.mask_url(app.url),
        request_body=_text(body),
    )
    started = time.monotonic()
    try:
        response = http.request("POST", app.url, body, headers, timeout=app.timeout_seconds)
    except http.TransportError as exc:
        log.response_status = exc.status
        log.error = exc.message
        if exc.status == 408:
            outcome = Outcome(
                504,
                error_code="loyalty_app_timeout",
                message=f"The loyalty app did not answer within {app.timeout_seconds} s.",
            )
        else:
            outcome = Outcome(
                502,
                error_code="loyalty_app_unreachable",
                message=f"The loyalty app could not be reached: {exc.message}.",
            )
    else:
        log.response_status = response.status
        log.response_body = _text(response.body)
        outcome = _answer(response)
        log.error = outcome.message if not outcome.ok else _http_error(response.status)
    log.duration_ms = int((time.monotonic() - started) * 1000)
    log.succeeded = outcome.ok and policy.is_success(log.response_status)
    if _should_log(app.log_mode, log.succeeded):
        log.save()
    return outcome


def _answer(response: http.HttpResult) -> Outcome:
    if response.truncated:
        return Outcome(
            502,
            error_code="loyalty_app_bad_answer",
            message=f"The loyalty app's answer is larger than {http.MAX_RESPONSE_BYTES // 1024} "
            "KiB.",
        )
    if not 100 <= response.status <= 599:
        # HTTP allows three digits, but we cannot answer the POS with such a status.
        return Outcome(
            502,
            error_code="loyalty_app_bad_answer",
            message=f"The loyalty app answered with status {response.status}, which is not "
            "an HTTP status we can pass on.",
        )
    if response.status == 204 and not response.body:
        return Outcome(204)
    try:
        data = json.loads(response.body)
    except ValueError:
        return Outcome(
            502,
            error_code="loyalty_app_bad_answer",
            message=f"The loyalty app answered {response.status} without a JSON body.",
        )
    return Outcome(response.status, data=data, raw=response.body)


def _http_error(status: int) -> str:
    return "" if policy.is_success(status) else f"HTTP {status}"


def _should_log(mode: str, succeeded: bool) -> bool:
    return mode == Endpoint.LogMode.FULL or (mode == Endpoint.LogMode.ERROR and not succeeded)


def _text(body: bytes) -> str:
    # PostgreSQL's text cannot hold NUL: shown as U+FFFD in the call log.
    return body[:MAX_LOGGED_BODY].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
