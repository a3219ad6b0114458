"""The HTTP exchange itself: connections pinned to checked addresses, sending, reading.

Plain ``requests`` or urllib3 would resolve the host again when connecting (so DNS rebinding
could slip a private address past the check), follow redirects, read proxies and netrc from the
environment and read bodies of any size. Here urllib3 runs with connection classes that connect
only to the addresses the current attempt checked, under the attempt's deadline, with no
redirects and verified TLS; bodies are read in chunks up to :data:`MAX_RESPONSE_BYTES`.

Each thread gets its own urllib3 pool manager, so keep-alive connections are reused per thread
and no connection is ever shared between threads.

The top of the package: imports ``addresses``, ``deadline``, ``errors`` (and ``dns`` types).
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import urllib3
import urllib3.exceptions
from requests.utils import check_header_validity
from urllib3 import HTTPHeaderDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from lib.http.addresses import (
    BLOCKED_MESSAGE,
    IPNetwork,
    Target,
    address_allowed,
    checked_addresses,
    effective_networks,
    parse_target,
)
from lib.http.deadline import Attempt, current_attempt, set_current, watchdog
from lib.http.dns import IPAddress
from lib.http.errors import TransportError, timeout_error, translate
from lib.http.tls import ca_file

VERSION = "0.1.0"
USER_AGENT = f"POS-Webhooks/{VERSION}"
MAX_RESPONSE_BYTES = 64 * 1024
MAX_TIMEOUT = 30.0

_MIN_TIMEOUT = 0.1
_CHUNK_BYTES = 16 * 1024


@dataclass
class HttpResult:
    """A complete HTTP response, whatever its status.

    ``body`` is decoded from any gzip/deflate content-encoding (``headers`` still say how it was
    sent) and holds at most MAX_RESPONSE_BYTES; ``truncated`` tells whether there was more.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool
    duration_ms: int


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float = MAX_TIMEOUT,
    allowed_networks: Sequence[IPNetwork] | None = None,
) -> HttpResult:
    """POST a webhook body to a merchant URL.

    Args:
        url: http:// or https:// URL; ``user:pass@`` in it is sent as basic auth.
        body: The request body, sent as is.
        headers: Extra request headers; they override the defaults (User-Agent...).
        timeout: Seconds for the whole attempt, clamped to (0, MAX_TIMEOUT].
        allowed_networks: Non-public networks that may be used anyway; None reads the Django
            setting WEBHOOK_ALLOWED_NETWORKS (empty without Django settings).

    Returns:
        The response, whatever its status (3xx redirects are not followed).

    Raises:
        TransportError: Nothing usable came back, or the URL or its address was refused.
    """
    return request("POST", url, body, headers, timeout=timeout, allowed_networks=allowed_networks)


def request(
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    *,
    timeout: float = MAX_TIMEOUT,
    allowed_networks: Sequence[IPNetwork] | None = None,
) -> HttpResult:
    """Send one HTTP request with all the protections described in the package docstring.

    Args:
        method: HTTP method, e.g. "POST".
        url: http:// or https:// URL; ``user:pass@`` in it is sent as basic auth.
        body: The request body, or None for no body.
        headers: Extra request headers; they override the defaults (User-Agent...).
        timeout: Seconds for the whole attempt, clamped to (0, MAX_TIMEOUT].
        allowed_networks: Non-public networks that may be used anyway; None reads the Django
            setting WEBHOOK_ALLOWED_NETWORKS (empty without Django settings).

    Returns:
        The response, whatever its status (3xx redirects are not followed).

    Raises:
        TransportError: Nothing usable came back, or the URL or its address was refused.
    """
    started = time.monotonic()
    limit = _clamp_timeout(timeout)
    target = parse_target(url)
    networks = effective_networks(allowed_networks)
    addresses = checked_addresses(target, networks, started + limit, limit)
    attempt = Attempt(started + limit, addresses, networks)
    watchdog.add(attempt)
    set_current(attempt)
    try:
        reply = _exchange(method, target, body, headers)
    except TransportError:
        raise
    except Exception as exc:
        raise translate(exc, attempt.fired, limit) from exc
    finally:
        set_current(None)
        cut_by_deadline = attempt.finish()
        watchdog.discard(attempt)
    if cut_by_deadline and not reply.delimited:
        # A body that ends when the connection closes looks complete when the watchdog cuts it.
        raise timeout_error(limit)
    duration_ms = int((time.monotonic() - started) * 1000)
    return HttpResult(reply.status, reply.headers, reply.body, reply.truncated, duration_ms)


# --------------------------------------------------------------------------------------------
# Connections pinned to the checked address
# --------------------------------------------------------------------------------------------


class _PinnedConnectionMixin:
    """Connect to the addresses the current attempt checked, never resolving the host again.

    The host name stays the connection's host, so the Host header, TLS SNI and certificate
    verification still use it.
    """

    _watched_by: Attempt | None = None

    def _new_conn(self) -> socket.socket:
        conn: Any = self
        attempt = current_attempt()
        try:
            sock = _connect_any(attempt, conn.port, conn.socket_options)
        except TimeoutError as exc:
            raise urllib3.exceptions.ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out."
            ) from exc
        except OSError as exc:
            raise urllib3.exceptions.NewConnectionError(
                conn, f"Failed to establish a new connection: {exc}"
            ) from exc
        sys.audit("http.client.connect", self, conn.host, conn.port)
        self._watched_by = attempt
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        conn: Any = self
        attempt = current_attempt()
        if conn.sock is not None and self._watched_by is not attempt:
            # A kept-alive connection: it must obey this attempt's deadline and policy.
            _check_peer(conn.sock, attempt.networks)
            attempt.watch(conn.sock)
            self._watched_by = attempt
        super().request(*args, **kwargs)  # type: ignore[misc]


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


def _connect_any(
    attempt: Attempt, port: int, options: Sequence[tuple[int, int, int | bytes]] | None
) -> socket.socket:
    error: OSError = OSError("no address to connect to")
    for ip in attempt.addresses:
        if attempt.remaining() <= 0:
            raise TimeoutError("deadline reached while connecting")
        try:
            return _connect_one(attempt, ip, port, options)
        except OSError as exc:
            error = exc
    raise error


def _connect_one(
    attempt: Attempt,
    ip: IPAddress,
    port: int,
    options: Sequence[tuple[int, int, int | bytes]] | None,
) -> socket.socket:
    # AI_NUMERICHOST: turning the checked address into a sockaddr must not query DNS.
    family, kind, proto, _name, sockaddr = socket.getaddrinfo(
        str(ip), port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        for option in options or ():
            sock.setsockopt(*option)
        attempt.watch(sock)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _check_peer(sock: socket.socket, networks: Sequence[IPNetwork]) -> None:
    try:
        peer = ipaddress.ip_address(sock.getpeername()[0])
    except (OSError, ValueError):
        return  # not connected any more: sending will fail and be reported on its own
    if not address_allowed(peer, networks):
        raise TransportError(BLOCKED_MESSAGE, permanent=True)


# --------------------------------------------------------------------------------------------
# The exchange itself
# --------------------------------------------------------------------------------------------


# What requests sent by default; the same bytes on the wire as before we dropped its Session.
_DEFAULT_HEADERS = {
    "User-Agent": USER_AGENT,
    # Only encodings whose decompression urllib3 bounds by the requested amount.
    "Accept-Encoding": "gzip, deflate",
    "Accept": "*/*",
    "Connection": "keep-alive",
}
# Per thread: the urllib3 pool manager ("manager"), built on first use.
_state = threading.local()


def _pool_manager() -> urllib3.PoolManager:
    # urllib3 itself rather than a requests.Session: the Session's per-request work (merging
    # settings, cookies, hooks, building a Response) cost more CPU than the HTTP exchange, and
    # its cookie jar would carry one merchant's cookies to the next URL on the same thread.
    manager: urllib3.PoolManager | None = getattr(_state, "manager", None)
    if manager is None:
        # No proxy or netrc is read from the environment: they would bypass the SSRF guard.
        manager = urllib3.PoolManager(
            num_pools=10, maxsize=1, retries=False, cert_reqs="CERT_REQUIRED", ca_certs=ca_file()
        )
        manager.pool_classes_by_scheme = {
            "http": _PinnedHTTPConnectionPool,
            "https": _PinnedHTTPSConnectionPool,
        }
        _state.manager = manager
    return manager


class _Reply(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool
    delimited: bool  # we know the body is whole (or cut by us), not just ended by a close


def _exchange(method: str, target: Target, body: bytes | None, headers: dict[str, str]) -> _Reply:
    remaining = current_attempt().remaining()
    if remaining <= 0:
        raise TimeoutError("deadline reached before sending")
    raw = _pool_manager().urlopen(
        method.upper(),
        target.url,
        body=body,
        headers=_outgoing_headers(headers, target),
        timeout=urllib3.Timeout(connect=remaining, read=remaining),
        redirect=False,
        retries=False,
        preload_content=False,
        decode_content=True,
    )
    complete = False
    try:
        content, truncated = _read_capped(raw)
        complete = not truncated
    finally:
        if not complete:
            # Draining the rest could take the whole deadline: drop the connection instead.
            raw.close()
        raw.release_conn()
    # urllib3 raises on a short body when the length is declared or chunked.
    delimited = truncated or raw.chunked or raw.length_remaining is not None
    return _Reply(raw.status, dict(raw.headers), content, truncated, delimited)


def _outgoing_headers(headers: dict[str, str], target: Target) -> HTTPHeaderDict:
    # Case-insensitive, so a caller's "user-agent" replaces ours instead of adding a second.
    outgoing = HTTPHeaderDict(_DEFAULT_HEADERS)
    for name, value in headers.items():
        check_header_validity((name, value))
        outgoing[name] = value
    if target.authorization is not None and "authorization" not in outgoing:
        outgoing["Authorization"] = target.authorization
    return outgoing


def _read_capped(raw: urllib3.BaseHTTPResponse) -> tuple[bytes, bool]:
    # decode_content with a size: urllib3 (>= 2.6) never decompresses more than asked for,
    # so a gzip bomb costs at most the cap.
    buffer = bytearray()
    while True:
        wanted = min(_CHUNK_BYTES, MAX_RESPONSE_BYTES + 1 - len(buffer))
        chunk = raw.read(wanted, decode_content=True)
        if not chunk:
            return bytes(buffer), False
        buffer += chunk
        if len(buffer) > MAX_RESPONSE_BYTES:
            return bytes(buffer[:MAX_RESPONSE_BYTES]), True


def _clamp_timeout(timeout: float) -> float:
    if math.isnan(timeout) or timeout > MAX_TIMEOUT:
        return MAX_TIMEOUT
    # Zero or less would fail every attempt before it starts; treat it as "as short as sane".
    return timeout if timeout > 0 else _MIN_TIMEOUT


def _reset_after_fork() -> None:
    # Job runners fork: pooled sockets of the parent must not be shared with the child.
    global _state
    _state = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
