"""Custom request headers a webhook sends with every delivery (e.g. a receiver's API key).

Pure rules, shared by the API, the dashboard form and the model: which names may be set,
what a value may hold, and how values are shown masked and kept when a masked value comes
back unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_HEADERS = 20
MAX_NAME_LENGTH = 100
MAX_VALUE_LENGTH = 1000
MASK = "****"

# RFC 9110 token: what an HTTP field name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ASCII, space and tab: no CR, LF or NUL that could split or end the header block.
_VALUE = re.compile(r"[\t\x20-\x7e]*")

# Headers the sender owns: the Standard Webhooks signature, what describes the body and the
# connection, and the hop-by-hop headers (RFC 9110 7.6.1) that a proxy would drop.
REFUSED = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "content-encoding",
        "host",
        "user-agent",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)


class HeaderError(ValueError):
    """Custom headers that cannot be used; the message names the bad header."""


def validate_headers(value: Any) -> dict[str, str]:
    """Check custom headers and return them as an ordered name -> value dict.

    Args:
        value: a JSON object of name -> value, or a list of {"name", "value"} objects.

    Raises:
        HeaderError: not an object, too many, a name that is not an HTTP token or that the
            sender owns, a duplicate name, or a value with control characters or too long.
    """
    if value is None:
        return {}
    if isinstance(value, list):
        pairs = []
        for item in value:
            if not isinstance(item, dict) or set(item) != {"name", "value"}:
                raise HeaderError('Each header is an object {"name": ..., "value": ...}.')
            pairs.append((item["name"], item["value"]))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise HeaderError('Headers are a JSON object of name to value, e.g. {"X-Api-Key": "..."}.')
    if len(pairs) > MAX_HEADERS:
        raise HeaderError(f"At most {MAX_HEADERS} custom headers, got {len(pairs)}.")
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for name, text in pairs:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise HeaderError(
                f"Header name {name!r} is not a valid HTTP header name (letters, digits and "
                "!#$%&'*+-.^_`|~ only)."
            )
        if len(name) > MAX_NAME_LENGTH:
            raise HeaderError(f"Header name {name[:20]!r}... is longer than {MAX_NAME_LENGTH}.")
        if name.lower() in REFUSED:
            raise HeaderError(f"Header {name} is set by the sender and cannot be overridden.")
        if name.lower() in seen:
            raise HeaderError(f"Header {name} is given twice.")
        seen.add(name.lower())
        if not isinstance(text, str):
            raise HeaderError(f"The value of header {name} must be a string.")
        if not _VALUE.fullmatch(text):
            raise HeaderError(
                f"The value of header {name} may hold only printable ASCII characters, "
                "spaces and tabs (no line breaks)."
            )
        if len(text) > MAX_VALUE_LENGTH:
            raise HeaderError(
                f"The value of header {name} is longer than {MAX_VALUE_LENGTH} characters."
            )
        headers[name] = text.strip()
    return headers


def mask_value(value: str) -> str:
    """Enough to tell values apart (the last 4 characters of a long one), never to use it."""
    return MASK + value[-4:] if len(value) >= 16 else MASK


def keep_masked(submitted: Mapping[str, str], current: Mapping[str, str]) -> dict[str, str]:
    """Put stored values back where a header comes back with its value still masked.

    What was read masked (the API's GET, the edit form) can be sent back unchanged: a
    header of the same name whose value is exactly its mask keeps the stored value.
    """
    stored = {name.lower(): value for name, value in current.items()}
    kept = {}
    for name, value in submitted.items():
        old = stored.get(name.lower())
        kept[name] = old if old is not None and value == mask_value(old) else value
    return kept
