"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

`webhook-signature` is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where the
key is the base64 part of a `whsec_...` secret. During a rotation several secrets sign at
once and the signatures are space-separated, so receivers on either key keep verifying.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# myPOS's own example secret, `myrandomgeneratedsecret`, is 23 bytes: 16 (128 bits) is the
# floor HMAC-SHA256 keys need, while the secrets we generate stay at 32 bytes.
MIN_SECRET_BYTES = 16


def new_secret() -> str:
    """A new signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret.

    `whsec_` secrets carry base64 key bytes; any other string (myPOS lets integrators choose
    their own secret) is used as UTF-8 bytes.
    """
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except ValueError:
            pass
    return secret.encode()


def validate_secret(secret: str) -> None:
    """Raise ValueError with a user-facing message when a secret is too weak to sign with."""
    if len(secret_key(secret)) < MIN_SECRET_BYTES:
        raise ValueError(f"The secret must be at least {MIN_SECRET_BYTES} bytes long.")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature.

    Args:
        key: the HMAC key (see `secret_key`).
        msg_id: the `webhook-id`, the same on every retry.
        timestamp: the `webhook-timestamp`, Unix seconds of this attempt.
        body: the exact bytes sent.

    Returns:
        The signature in the Standard Webhooks form.
    """
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys)


def headers(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(keys, msg_id, timestamp, body),
    }


def verify(
    secret: str, msg_id: str, timestamp: str, body: bytes, signature_header_value: str
) -> bool:
    """True when any `v1` signature in the header was made with `secret` (inspector, tests)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    expected = sign(secret_key(secret), msg_id, ts, body)
    return any(
        hmac.compare_digest(expected, candidate)
        for candidate in signature_header_value.split()
        if candidate.startswith("v1,")
    )
