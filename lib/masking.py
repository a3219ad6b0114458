"""URLs as staff see them: nothing in them that works as a credential.

`lib.http.mask_url` hides a basic-auth password. A URL carries credentials in two more
places: query values (`?token=...`, `?key=...`: receivers often authenticate that way) and
an inspector's catch path (`/catch/<token>/`: the URL itself is the credential).
"""

from __future__ import annotations

import re
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
