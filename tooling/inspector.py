"""The request inspector: `/catch/<token>/` records what is sent to it, as Beeceptor and
requestcatcher do in the vendors' guides, so a merchant can try webhooks with no server.

It answers as the merchant chooses (200, 500, 410 or slowly) to rehearse failures, and tells
whether a Standard Webhooks signature verifies with the secret of one of their webhooks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from lib import redis_client, signing
from tooling.models import Inspector, InspectorRequest

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
# Headers are stored too (as JSON), so they count: a request may bring up to 100 headers of
# 8 KiB each through gunicorn, which would otherwise be 800 KiB per stored request.
MAX_HEADER_BYTES = 16 * 1024
# The signature check tries this many enabled webhooks pointing at the inspector, at most:
# it runs on every unauthenticated request, so its cost must not grow with the merchant.
MAX_SIGNATURE_CANDIDATES = 5
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# Shown as "Basic ****": the merchant sees that credentials arrived, never what they are.
_MASKED_HEADERS = {"authorization", "proxy-authorization", "cookie"}
# A slow answer holds a web server thread for up to INSPECTOR_SLOW_MAX_SECONDS (a few
# seconds). Two at a time per process leave most of a web process's threads (gunicorn runs 4
# in the Procfile) to everyone else, however many requests a slow inspector gets; the rest are
# answered 503 at once.
SLOW_SLOTS = 2
_SLOW_SLOTS = threading.BoundedSemaphore(SLOW_SLOTS)


@dataclass
class Reply:
    """What the inspector answers: a status, a small JSON body, and how long to wait first."""

    status: int
    body: dict[str, object]
    delay: float = 0.0


def capture(
    inspector: Inspector,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    source: str,
) -> InspectorRequest:
    """Store one request, check its signature, and drop requests beyond the latest 100.

    Args:
        inspector: the inspector the request was sent to.
        method: the HTTP method, as received.
        path: the path with its query string.
        headers: the request headers (any case).
        body: the body bytes, at most MAX_BODY_BYTES.
        source: the client address.

    Returns:
        The stored request.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    signature, detail = check_signature(inspector, lowered, body)
    stored = InspectorRequest.objects.create(
        inspector=inspector,
        method=_storable(method[:16]),
        path=_storable(path[:2048]),
        headers={
            _storable(name): _storable(_masked(name, value)) for name, value in lowered.items()
        },
        body=_storable(body.decode("utf-8", errors="replace")),
        size=len(body),
        source=_storable(source[:64]),
        answered=inspector.answer,
        signature=signature,
        signature_detail=detail[:300],
    )
    _keep_latest(inspector)
    return stored


def header_bytes(headers: Mapping[str, str]) -> int:
    """Roughly what the headers take once stored: their names and values, UTF-8 encoded."""
    return sum(len(name.encode()) + len(value.encode()) for name, value in headers.items())


def _storable(text: str) -> str:
    # PostgreSQL's text and jsonb cannot hold NUL; U+FFFD shows the merchant where it was.
    return text.replace("\x00", "\ufffd")


def _keep_latest(inspector: Inspector) -> None:
    oldest_kept = list(
        inspector.requests.order_by("-id").values_list("id", flat=True)[
            Inspector.KEEP_REQUESTS - 1 : Inspector.KEEP_REQUESTS
        ]
    )
    if oldest_kept:
        inspector.requests.filter(id__lt=oldest_kept[0]).delete()


def _masked(name: str, value: str) -> str:
    if name not in _MASKED_HEADERS:
        return value
    scheme = value.split(" ", 1)[0] if " " in value else ""
    return f"{scheme} ****".strip()


def check_signature(
    inspector: Inspector, headers: Mapping[str, str], body: bytes
) -> tuple[str, str]:
    """Whether the Standard Webhooks headers verify with a secret of the merchant.

    Only the merchant's enabled webhooks pointing at this inspector are tried (a few at
    most), then the merchant's secret for one-off URLs: the check runs for anyone who has the
    URL, so it costs the same however many webhooks the merchant has.

    Returns:
        An `InspectorRequest.Signature` value and a sentence saying why.
    """
    present = [name for name in SIGNATURE_HEADERS if headers.get(name)]
    if not present:
        return InspectorRequest.Signature.UNSIGNED, ""
    if len(present) < len(SIGNATURE_HEADERS):
        missing = ", ".join(name for name in SIGNATURE_HEADERS if name not in present)
        return InspectorRequest.Signature.INVALID, f"Incomplete: no {missing} header."
    msg_id, timestamp, header = (headers[name] for name in SIGNATURE_HEADERS)
    for label, secret in _candidate_secrets(inspector):
        if signing.verify(secret, msg_id, timestamp, body, header):
            return InspectorRequest.Signature.VALID, f"Verified with the secret of {label}."
    return (
        InspectorRequest.Signature.INVALID,
        "No secret of your enabled webhooks pointing here verifies it: the body, the "
        "webhook-id or the webhook-timestamp differ from what was signed, or another secret "
        "signed it.",
    )


def _candidate_secrets(inspector: Inspector) -> Iterator[tuple[str, str]]:
    pointing = inspector.pointing_endpoints().filter(is_enabled=True).order_by("-id")
    for endpoint in pointing[:MAX_SIGNATURE_CANDIDATES]:
        for secret in endpoint.signing_secrets():
            yield f"webhook {endpoint.public_id}", secret
    yield "your account (one-off webhook URLs)", inspector.merchant.webhook_secret


def reply(inspector: Inspector) -> Reply:
    """The answer the merchant chose for this inspector."""
    answer = inspector.answer
    if answer == Inspector.Answer.ERROR:
        return Reply(500, {"error": "The inspector is set to answer 500, to rehearse failures."})
    if answer == Inspector.Answer.GONE:
        return Reply(410, {"error": "The inspector is set to answer 410 Gone."})
    if answer == Inspector.Answer.SLOW:
        delay = inspector.slow_delay
        return Reply(200, {"received": True, "slow": delay}, delay=float(delay))
    return Reply(200, {"received": True})


def over_catch_rate(inspector: Inspector) -> int | None:
    """Count one request to the inspector's catch URL; seconds to wait when over the rate.

    A fixed window per inspector in Redis (INSPECTOR_CATCH_RATE). Like the API's rate limit
    it fails open: with Redis down requests are still caught.
    """
    limit, window = settings.INSPECTOR_CATCH_RATE
    now = time.time()
    bucket = int(now // window)
    key = f"webhooks:catch:{inspector.pk}:{bucket}"
    try:
        pipe = redis_client.connection().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window + 1)
        used = int(pipe.execute()[0])
    except RedisError as exc:
        log.warning("catch URL rate limit unavailable (%s); allowing the request", exc)
        return None
    if used <= limit:
        return None
    return max(1, int((bucket + 1) * window - now + 0.999))


def acquire_slow_slot() -> bool:
    """Take one of the few slots for a slow answer; False when all are taken."""
    return _SLOW_SLOTS.acquire(blocking=False)


def release_slow_slot() -> None:
    _SLOW_SLOTS.release()
