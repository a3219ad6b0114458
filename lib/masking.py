"""URLs and headers as staff see them: nothing in them that works as a credential.

`lib.http.mask_url` hides a basic-auth password. A URL carries credentials in two more
places: query values (`?token=...`, `?key=...`: receivers often authenticate that way) and
an inspector's catch path (`/catch/<token>/`: the URL itself is the credential).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from lib.http import mask_url

MASK = "****"
# The token of an inspector's catch URL: the segment after /catch/.
_CATCH = re.compile(r"(/catch/)[^/?#]+")
_QUERY_VALUE = re.compile(r"=[^&;]*")


def mask_url_secrets(url: str) -> str:
    """The URL with its password, query values, fragment and catch token masked.

    Args:
        url: any URL, e.g. "https://u:p@host/in?token=abc" or "http://host/catch/tok/".

    Returns:
        "https://u:****@host/in?token=****"; "http://host/catch/****/".
    """
    url = mask_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return _CATCH.sub(rf"\g<1>{MASK}", url.split("?", 1)[0].split("#", 1)[0])
    query = _QUERY_VALUE.sub(f"={MASK}", parts.query)
    fragment = MASK if parts.fragment else ""
    path = _CATCH.sub(rf"\g<1>{MASK}", parts.path)
    return urlunsplit((parts.scheme, parts.netloc, path, query, fragment))


_MASKED_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie"}


def mask_headers(headers: dict[str, str], also: Mapping[str, str] | None = None) -> dict[str, str]:
    """Secrets masked, and the names in `also`; NUL made visible (PostgreSQL's JSON
    cannot store it)."""
    masked = _MASKED_HEADERS | {name.lower() for name in also or ()}
    return {
        _storable(k): (MASK if k.lower() in masked else _storable(v)) for k, v in headers.items()
    }


def storable_text(body: bytes, limit: int) -> str:
    """A receiver's bytes (the first `limit`) as text any database stores: invalid UTF-8 and
    NUL replaced."""
    return _storable(body[:limit].decode("utf-8", errors="replace"))


def _storable(text: str) -> str:
    return text.replace("\x00", "\ufffd")
