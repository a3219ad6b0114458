"""Outbound HTTP for webhook deliveries: the one package of the product that talks to merchants.

Plain ``requests`` or ``urllib3`` is not safe enough for URLs typed in by merchants, so
:func:`request` adds:

* a total deadline per attempt (DNS, connect, TLS, send, headers and body together), enforced by
  one watchdog thread that shuts down the sockets of late attempts;
* a response body read in chunks and capped at :data:`MAX_RESPONSE_BYTES`, after decompression;
* DNS lookups bound by the same deadline, each on its own thread, so lookups that hang for
  one host name cannot hold up the lookups of any other;
* an SSRF guard that resolves the host once, refuses non-public addresses and then connects to
  the very address it checked, so DNS rebinding cannot slip a private address in;
* no redirects, verified TLS, no proxy or netrc from the environment;
* short error messages fit for a delivery log, never containing the URL's password.

Modules, each importing only those listed before it:

* ``errors``: :class:`TransportError` and the translation of low-level exceptions into it;
* ``dns``: :func:`resolve` and lookups with a deadline that cannot starve other host names;
* ``addresses``: URL parsing and checks, the public-address policy, allowed networks,
  :func:`mask_url`;
* ``deadline``: an attempt's total deadline and the watchdog thread that enforces it;
* ``client``: connections pinned to checked addresses, the exchange, capped bodies,
  :func:`request` and :func:`post`.

Import from the package (``from deliveries import http``), not from its modules. Two names are
seams, read from the package at call time so tests can replace them here:
``lib.http.resolve`` (stub DNS) and ``lib.http.is_public_address``.
"""

from __future__ import annotations

from lib.http.addresses import (
    MAX_URL_LENGTH,
    IPNetwork,
    check_url,
    is_public_address,
    mask_url,
    parse_networks,
)
from lib.http.client import (
    MAX_RESPONSE_BYTES,
    MAX_TIMEOUT,
    USER_AGENT,
    VERSION,
    HttpResult,
    post,
    request,
)

# Not public: tests check that the watchdog forgets finished attempts (http._watchdog).
from lib.http.deadline import watchdog as _watchdog  # noqa: F401
from lib.http.dns import IPAddress, resolve
from lib.http.errors import TransportError

__all__ = [
    "MAX_RESPONSE_BYTES",
    "MAX_TIMEOUT",
    "MAX_URL_LENGTH",
    "USER_AGENT",
    "VERSION",
    "HttpResult",
    "IPAddress",
    "IPNetwork",
    "TransportError",
    "check_url",
    "is_public_address",
    "mask_url",
    "parse_networks",
    "post",
    "request",
    "resolve",
]
