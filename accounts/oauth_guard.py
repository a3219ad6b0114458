"""What the token endpoint checks before and after django-oauth-toolkit sees a request.

- Only the client-credentials grant is served: oauthlib validates a password grant's
  username and password before it checks that the client may use that grant, so its answer
  told a right password from a wrong one for any user. Other grants are refused unread.
- Failed client authentications are counted per client id and per address in Redis (a
  fixed window, as the API's rate limit); beyond the limit the secret is not checked at all.
- A secret still hashed with a slow KDF is re-hashed with one SHA-256 on its next success.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from dataclasses import dataclass
from urllib.parse import unquote_plus

from django.conf import settings
from django.contrib.auth.hashers import identify_hasher
from django.http import HttpRequest
from redis.exceptions import RedisError

from lib import redis_client
from lib.hashers import ALGORITHM

log = logging.getLogger(__name__)

GRANT = "client_credentials"


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str
    description: str
    retry_after: int | None = None


def check_grant(request: HttpRequest) -> Refusal | None:
    """A refusal for anything but the client-credentials grant, before any credential is read."""
    grant = request.POST.get("grant_type", "")
    if not grant:
        return Refusal(400, "invalid_request", "grant_type is required: client_credentials.")
    if grant != GRANT:
        return Refusal(
            400, "unsupported_grant_type", "Only grant_type=client_credentials is supported."
        )
    return None


def client_credentials(request: HttpRequest) -> tuple[str, str]:
    """The client id and secret the request presents (HTTP Basic first, then the form)."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme == "Basic" and encoded:
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        client_id, _, secret = decoded.partition(":")
        return unquote_plus(client_id), unquote_plus(secret)
    return request.POST.get("client_id", ""), request.POST.get("client_secret", "")


def _keys(client_id: str, address: str) -> list[tuple[str, int]]:
    bucket = int(time.time() // settings.OAUTH_FAILURE_WINDOW_SECONDS)
    keys = [(f"webhooks:oauth-fail:a:{address}:{bucket}", settings.OAUTH_ADDRESS_FAILURE_LIMIT)]
    if client_id:
        # Hashed: the id is the caller's text, of any length.
        digest = hashlib.sha256(client_id.encode()).hexdigest()[:32]
        keys.append(
            (f"webhooks:oauth-fail:c:{digest}:{bucket}", settings.OAUTH_CLIENT_FAILURE_LIMIT)
        )
    return keys


def _retry_after() -> int:
    window = settings.OAUTH_FAILURE_WINDOW_SECONDS
    return max(1, int(window - time.time() % window + 0.999))


def check_failures(client_id: str, address: str) -> Refusal | None:
    """429 when this client id or this address failed too often in the current window.

    Fails open with Redis down, as the API's rate limit does.
    """
    keys = _keys(client_id, address)
    try:
        counts = redis_client.connection().mget([key for key, _ in keys])
    except RedisError as exc:
        log.warning("token endpoint limiter unavailable (%s); allowing the request", exc)
        return None
    for (_, limit), count in zip(keys, counts, strict=True):
        if count is not None and int(count) >= limit:
            return Refusal(
                429,
                "rate_limited",
                "Too many failed client authentications; try again later.",
                _retry_after(),
            )
    return None


def record_failure(client_id: str, address: str) -> None:
    try:
        pipe = redis_client.connection().pipeline(transaction=False)
        for key, _ in _keys(client_id, address):
            pipe.incr(key)
            pipe.expire(key, settings.OAUTH_FAILURE_WINDOW_SECONDS + 1)
        pipe.execute()
    except RedisError as exc:
        log.warning("token endpoint limiter unavailable (%s); failure not counted", exc)


def rehash_secret(client_id: str, secret: str) -> None:
    """After a successful authentication: store a slow-KDF hash as one SHA-256 instead.

    Args:
        client_id: the client that just authenticated with `secret`.
        secret: the raw secret, proven right by the toolkit.
    """
    from oauth2_provider.models import get_application_model

    application = get_application_model().objects.filter(client_id=client_id).first()
    if application is None or not application.hash_client_secret:
        return
    try:
        algorithm = identify_hasher(application.client_secret).algorithm
    except ValueError:
        return
    if algorithm != ALGORITHM:
        # The toolkit's field hashes a raw value with CLIENT_SECRET_HASHER on save.
        application.client_secret = secret
        application.save(update_fields=["client_secret"])
