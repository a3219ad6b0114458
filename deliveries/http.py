"""Outbound HTTP for webhook deliveries: the one module of the product that talks to merchants.

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

Each thread gets its own urllib3 pool manager, so keep-alive connections are reused per thread
and no connection is ever shared between threads.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import heapq
import http.client
import ipaddress
import itertools
import math
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import certifi
import idna
import requests
import urllib3
import urllib3.exceptions
from requests.utils import check_header_validity
from urllib3 import HTTPHeaderDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = [
    "MAX_RESPONSE_BYTES",
    "MAX_TIMEOUT",
    "MAX_URL_LENGTH",
    "USER_AGENT",
    "VERSION",
    "HttpResult",
    "TransportError",
    "check_url",
    "is_public_address",
    "mask_url",
    "parse_networks",
    "post",
    "request",
    "resolve",
]

VERSION = "0.1.0"
USER_AGENT = f"POS-Webhooks/{VERSION}"
MAX_RESPONSE_BYTES = 64 * 1024
MAX_TIMEOUT = 30.0
MAX_URL_LENGTH = 2048

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_MIN_TIMEOUT = 0.1
_MIN_SOCKET_TIMEOUT = 0.01
_CHUNK_BYTES = 16 * 1024
_CHECK_URL_DNS_TIMEOUT = 10.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BLOCKED_MESSAGE = "blocked: address not public"
_HOST_PATTERN = re.compile(r"^[a-z0-9_.-]+$")

# Ranges that are not reachable on the public internet, or that point back into our own network.
# ipaddress' own flags vary between Python patch releases, so the list is spelled out here.
_BLOCKED_V4 = tuple(
    IPv4Network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network", includes the unspecified address
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, includes cloud metadata at 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes the broadcast address
    )
)
_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
_BLOCKED_V6 = tuple(
    IPv6Network(cidr)
    for cidr in (
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID...
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
_NAT64_V6 = IPv6Network("64:ff9b::/96")


class TransportError(Exception):
    """One error type for everything that went wrong before we had a full response.

    Attributes:
        message: Short, readable cause ("connection refused", "timed out after 30 s"...). It never
            contains the password of the URL.
        status: 408 for a timeout (DealPOS records a timeout as 408), else None.
        permanent: True when retrying cannot help (blocked address, unusable URL); False for
            network errors and timeouts.
    """

    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.permanent = permanent


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


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


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
    """Send one HTTP request with all the protections described in the module docstring.

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
    target = _parse_target(url)
    networks = _effective_networks(allowed_networks)
    addresses = _checked_addresses(target, networks, started + limit, limit)
    attempt = _Attempt(started + limit, addresses, networks)
    _watchdog.add(attempt)
    _state.attempt = attempt
    try:
        reply = _exchange(method, target, body, headers)
    except TransportError:
        raise
    except Exception as exc:
        raise _translate(exc, attempt.fired, limit) from exc
    finally:
        _state.attempt = None
        cut_by_deadline = attempt.finish()
        _watchdog.discard(attempt)
    if cut_by_deadline and not reply.delimited:
        # A body that ends when the connection closes looks complete when the watchdog cuts it.
        raise _timeout_error(limit)
    duration_ms = int((time.monotonic() - started) * 1000)
    return HttpResult(reply.status, reply.headers, reply.body, reply.truncated, duration_ms)


def check_url(
    url: str,
    *,
    require_https: bool,
    allowed_networks: Sequence[IPNetwork] | None = None,
    resolve: bool = True,
) -> None:
    """Check at save time that a URL may be used as a webhook URL.

    An IP address literal is always checked; a host name only when ``resolve`` is True.

    Args:
        url: The URL as entered by the user.
        require_https: Refuse http:// URLs.
        allowed_networks: Non-public networks that may be used anyway; None reads the Django
            setting WEBHOOK_ALLOWED_NETWORKS (empty without Django settings).
        resolve: Resolve the host name and check every address it resolves to.

    Raises:
        ValueError: With a short, user-facing message fit for a form field or an API 400.
    """
    host, port = _checked_url_parts(url, require_https=require_https)
    literal = _literal_address(host)
    if literal is None and not resolve:
        return
    networks = _effective_networks(allowed_networks)
    addresses = [literal] if literal is not None else _resolve_for_check(host, port)
    if not all(_address_allowed(ip, networks) for ip in addresses):
        raise ValueError("This address is not allowed: it is not a public address.")


def resolve(host: str, port: int) -> list[IPAddress]:
    """Resolve a host name to its IP addresses, in the order the system prefers them.

    Every connection made by this module goes to an address returned here and checked, so
    tests can replace this function with a stub resolver.

    Args:
        host: Host name or numeric address (any form getaddrinfo accepts, e.g. "2130706433").
        port: Destination port.

    Returns:
        The distinct IPv4 and IPv6 addresses; may be empty.

    Raises:
        OSError: The name could not be resolved (socket.gaierror).
    """
    addresses: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        if family in (socket.AF_INET, socket.AF_INET6):
            ip = ipaddress.ip_address(sockaddr[0])
            if ip not in addresses:
                addresses.append(ip)
    return addresses


def is_public_address(ip: IPAddress) -> bool:
    """Tell whether an address is a public unicast address, safe to send webhooks to.

    IPv6 forms that embed an IPv4 address (IPv4-mapped, NAT64, 6to4) are judged by that
    IPv4 address, so ``::ffff:127.0.0.1`` is not public.

    Args:
        ip: The address to check.

    Returns:
        True for a public address; False for loopback, private, link-local, CGNAT, reserved,
        multicast, documentation, unspecified and similar ranges.
    """
    if isinstance(ip, IPv4Address):
        return ip.is_global and not any(ip in network for network in _BLOCKED_V4)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return is_public_address(embedded)
    return (
        ip in _GLOBAL_UNICAST_V6
        and ip.is_global
        and not any(ip in network for network in _BLOCKED_V6)
    )


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """Parse CIDR strings, such as the WEBHOOK_ALLOWED_NETWORKS setting.

    Args:
        values: CIDR strings ("10.0.0.0/8", "::1/128"); a bare address means just that address.
            A single string is split on commas and whitespace.

    Returns:
        The networks, in the given order; blank entries are skipped.

    Raises:
        ValueError: An entry is not a network.
    """
    if isinstance(values, str):
        values = re.split(r"[,\s]+", values)
    networks: list[IPNetwork] = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            # strict=False like the settings validation: "10.0.0.5/8" means 10.0.0.0/8.
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ValueError(f"Invalid network {text!r}: {exc}") from None
    return networks


def mask_url(url: str) -> str:
    """Hide the password of a URL, for display and logs.

    Args:
        url: Any URL, e.g. "https://user:secret@host/path".

    Returns:
        The same URL with only the password replaced: "https://user:****@host/path".
        URLs without a password come back unchanged.
    """
    marker = url.find("://")
    if marker == -1:
        return url
    start = marker + 3
    # The authority ends where urlsplit ends it, so we mask what the sender would use.
    end = min((i for i in (url.find(c, start) for c in "/?#") if i != -1), default=len(url))
    at = url.rfind("@", start, end)
    colon = url.find(":", start, at) if at != -1 else -1
    if colon == -1:
        return url
    return f"{url[: colon + 1]}****{url[at:]}"


# --------------------------------------------------------------------------------------------
# URL and address checks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    url: str  # without credentials: what is actually requested
    host: str  # IDNA-encoded, without IPv6 brackets
    port: int
    authorization: str | None


def _parse_target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
        host = _normalize_host(parts.hostname or "")
    except ValueError:
        raise TransportError("invalid URL", permanent=True) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise TransportError("unsupported URL scheme (only http and https)", permanent=True)
    if not host:
        raise TransportError("invalid URL", permanent=True)
    netloc = _format_host(host) + (f":{explicit_port}" if explicit_port is not None else "")
    clean_url = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    port = explicit_port or _DEFAULT_PORTS[scheme]
    return _Target(clean_url, host, port, _basic_authorization(parts))


def _normalize_host(host: str) -> str:
    # requests would IDNA-encode the host anyway; we need the same name for DNS and TLS.
    if host.isascii():
        return host
    return idna.encode(host, uts46=True).decode("ascii")


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _basic_authorization(parts: SplitResult) -> str | None:
    if not parts.username and not parts.password:
        return None
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")


def _checked_url_parts(url: str, *, require_https: bool) -> tuple[str, int]:
    if not isinstance(url, str) or not url:
        raise ValueError("Enter a valid URL.")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"The URL is too long (at most {MAX_URL_LENGTH} characters).")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("Enter a valid URL.") from None
    if not parts.scheme or "://" not in url:
        raise ValueError("Enter a valid URL.")
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("Only http:// and https:// URLs are allowed.")
    if require_https and scheme != "https":
        raise ValueError("The URL must use https://.")
    return _checked_host_and_port(url, parts)


def _checked_host_and_port(url: str, parts: SplitResult) -> tuple[str, int]:
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("Enter a valid URL.")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
        host = _normalize_host(parts.hostname or "")
    except ValueError:
        raise ValueError("Enter a valid URL.") from None
    if _literal_address(host) is None and not _HOST_PATTERN.match(host):
        raise ValueError("Enter a valid URL.")
    return host, port


def _resolve_for_check(host: str, port: int) -> list[IPAddress]:
    try:
        addresses = _lookup(host, port, _CHECK_URL_DNS_TIMEOUT)
    except (OSError, ValueError):
        raise ValueError("The host could not be resolved.") from None
    if not addresses:
        raise ValueError("The host could not be resolved.")
    return addresses


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_V6:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _address_allowed(ip: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    if is_public_address(ip):
        return True
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    # `in` compares integers only, so a version mismatch must be ruled out first.
    return any(
        candidate.version == network.version and candidate in network
        for candidate in candidates
        for network in networks
    )


def _effective_networks(allowed_networks: Sequence[IPNetwork] | None) -> list[IPNetwork]:
    if allowed_networks is not None:
        return list(allowed_networks)
    return _settings_networks()


def _settings_networks() -> list[IPNetwork]:
    # Imported here: the module must work, and its tests run, without Django settings.
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:
        return []
    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return []
    try:
        values = getattr(settings, "WEBHOOK_ALLOWED_NETWORKS", None)
    except (ImportError, ImproperlyConfigured):
        # Broken settings can only mean fewer exceptions to the SSRF guard, never more.
        return []
    return parse_networks(values or [])


def _checked_addresses(
    target: _Target, networks: Sequence[IPNetwork], deadline: float, limit: float
) -> list[IPAddress]:
    try:
        addresses = _lookup(target.host, target.port, deadline - time.monotonic())
    except TimeoutError:
        raise _timeout_error(limit) from None
    except (OSError, ValueError):
        raise TransportError(f"could not resolve host {target.host}") from None
    if not addresses:
        raise TransportError(f"could not resolve host {target.host}")
    # One bad address is enough: the system could pick it on any connection attempt.
    if not all(_address_allowed(ip, networks) for ip in addresses):
        raise TransportError(_BLOCKED_MESSAGE, permanent=True)
    return addresses


# --------------------------------------------------------------------------------------------
# DNS with a deadline
# --------------------------------------------------------------------------------------------

# getaddrinfo cannot be interrupted, so a lookup that outlives its caller's deadline keeps its
# thread until the system resolver gives up. A fixed pool let eight such lookups (one merchant's
# hanging name server) hold every thread while everyone else's lookups queued behind them and
# timed out. So each lookup gets a fresh daemon thread, and stuck threads are bounded instead.
# Lookup threads alive at once, stuck ones included: for all host names, and for one host name
# whatever the port. A caller joins a lookup of the same name and port started less than
# _DNS_JOIN_SECONDS ago (or the youngest one once the host is at its cap) instead of starting
# another: healthy names then cost one thread per burst, hanging ones at most four.
_DNS_MAX_THREADS = 256
_DNS_MAX_PER_HOST = 4
_DNS_JOIN_SECONDS = 1.0


class _Lookup:
    """One call of the resolver on its own thread; every caller that joined waits on ``future``."""

    __slots__ = ("future", "host", "port", "started")

    def __init__(self, host: str, port: int, started: float) -> None:
        self.host = host
        self.port = port
        self.started = started
        self.future: Future[list[IPAddress]] = Future()


class _Lookups:
    """Lookups in flight: who may start one, who joins one, and the threads that run them.

    A caller waits only for its own lookup (or one it joined) and only until its own deadline;
    a lookup that times out keeps its thread but no longer blocks anyone but callers of the
    same host name, which share at most _DNS_MAX_PER_HOST threads. Only when
    _DNS_MAX_THREADS lookups are stuck at once does a new one wait for a thread.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._by_host: dict[str, list[_Lookup]] = {}
        self._threads = 0

    def running(self) -> int:
        """How many lookup threads are alive (finished or not, until they return)."""
        with self._cond:
            return self._threads

    def lookup(self, host: str, port: int, timeout: float) -> list[IPAddress]:
        deadline = time.monotonic() + max(timeout, 0.0)
        future = self._start_or_join(host, port, deadline)
        # The shared answer is copied: every caller may reorder or extend its own list.
        return list(future.result(timeout=max(deadline - time.monotonic(), 0.0)))

    def _start_or_join(self, host: str, port: int, deadline: float) -> Future[list[IPAddress]]:
        with self._cond:
            while True:
                now = time.monotonic()
                running = self._by_host.get(host, [])
                same = [lookup for lookup in running if lookup.port == port]
                if same and (
                    now - same[-1].started < _DNS_JOIN_SECONDS or len(running) >= _DNS_MAX_PER_HOST
                ):
                    return same[-1].future
                if now >= deadline:
                    # No thread for a caller out of time: nobody would wait for its answer.
                    raise TimeoutError("no DNS answer before the deadline")
                if len(running) < _DNS_MAX_PER_HOST and self._threads < _DNS_MAX_THREADS:
                    break
                self._cond.wait(deadline - now)
            lookup = _Lookup(host, port, now)
            self._by_host.setdefault(host, []).append(lookup)
            self._threads += 1
        thread = threading.Thread(target=self._run, args=(lookup,), name="webhook-dns", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # the process is out of threads
            self._forget(lookup)
            raise OSError("could not start a DNS lookup") from None
        return lookup.future

    def _run(self, lookup: _Lookup) -> None:
        try:
            addresses = _call_resolver(lookup.host, lookup.port)
        except BaseException as exc:  # handed to every waiting caller, as a pool would
            lookup.future.set_exception(exc)
        else:
            lookup.future.set_result(addresses)
        finally:
            self._forget(lookup)

    def _forget(self, lookup: _Lookup) -> None:
        with self._cond:
            running = self._by_host[lookup.host]
            running.remove(lookup)
            if not running:
                del self._by_host[lookup.host]
            self._threads -= 1
            self._cond.notify_all()


_lookups = _Lookups()


def _lookup(host: str, port: int, timeout: float) -> list[IPAddress]:
    literal = _literal_address(host)
    if literal is not None:
        return [literal]
    return _lookups.lookup(host, port, timeout)


def _call_resolver(host: str, port: int) -> list[IPAddress]:
    return resolve(host, port)  # looked up at call time, so a stub resolver takes effect


# --------------------------------------------------------------------------------------------
# Deadlines: one watchdog thread for all attempts
# --------------------------------------------------------------------------------------------


class _Attempt:
    """One try at one request: its deadline, the addresses it may use and its sockets."""

    __slots__ = (
        "_lock",
        "_watchers",
        "addresses",
        "deadline",
        "done",
        "fired",
        "networks",
        "queued",
    )

    def __init__(
        self, deadline: float, addresses: list[IPAddress], networks: list[IPNetwork]
    ) -> None:
        self.deadline = deadline
        self.addresses = addresses
        self.networks = networks
        self.fired = False
        self.done = False
        self.queued = False  # in the watchdog's heap
        self._lock = threading.Lock()
        self._watchers: list[socket.socket] = []

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        # A duplicate descriptor survives TLS wrapping (which detaches the original socket
        # object), and shutting it down wakes every reader of the connection.
        watcher = socket.socket(fileno=os.dup(sock.fileno()))
        with self._lock:
            if self.done:
                watcher.close()
                return
            self._watchers.append(watcher)
            if self.fired:
                _shutdown(watcher)
        sock.settimeout(max(self.remaining(), _MIN_SOCKET_TIMEOUT))

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.fired = True
            # Under the lock: once finish() closed a descriptor, its number may be reused.
            for watcher in self._watchers:
                _shutdown(watcher)

    def finish(self) -> bool:
        """Stop watching the sockets; return True if the deadline had cut the attempt."""
        with self._lock:
            self.done = True
            watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.close()
        return self.fired


def _shutdown(sock: socket.socket) -> None:
    # OSError: already closed or never connected, nothing left to cut.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """A heap of attempts ordered by deadline, served by a single daemon thread."""

    # Finished attempts are dropped in bulk once they are most of the heap: left until their
    # deadline, a worker sending 1,000 requests a second with 30-second deadlines held 30,000
    # of them (the benchmark's memory growth).
    _COMPACT_AT = 256

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._finished = 0  # finished attempts still in the heap
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None

    def watched(self) -> int:
        """How many attempts the heap holds, finished ones included."""
        with self._cond:
            return len(self._heap)

    def discard(self, attempt: _Attempt) -> None:
        """Note that a finished attempt needs no watching; compact the heap now and then."""
        with self._cond:
            if not attempt.queued:
                return
            self._finished += 1
            if self._finished >= self._COMPACT_AT and self._finished * 2 >= len(self._heap):
                for entry in self._heap:
                    entry[2].queued = not entry[2].done
                self._heap = [entry for entry in self._heap if entry[2].queued]
                heapq.heapify(self._heap)
                self._finished = 0

    def add(self, attempt: _Attempt) -> None:
        with self._cond:
            attempt.queued = True
            heapq.heappush(self._heap, (attempt.deadline, next(self._counter), attempt))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="webhook-deadlines", daemon=True
                )
                self._thread.start()
            if self._heap[0][2] is attempt:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            self._next_due().fire()

    def _next_due(self) -> _Attempt:
        # Finished attempts stay queued until their deadline; fire() ignores them.
        with self._cond:
            while True:
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait <= 0:
                    attempt = heapq.heappop(self._heap)[2]
                    attempt.queued = False
                    if attempt.done:
                        self._finished -= 1
                    return attempt
                self._cond.wait(wait)


_watchdog = _Watchdog()
_state = threading.local()


def _current_attempt() -> _Attempt:
    attempt: _Attempt | None = getattr(_state, "attempt", None)
    if attempt is None:
        # Only request() may open connections: anything else would skip the SSRF check.
        raise TransportError("internal error: connection outside a checked request", permanent=True)
    return attempt


def _reset_after_fork() -> None:
    # Job runners fork: locks, threads and pooled sockets of the parent must not be inherited.
    global _lookups, _watchdog, _state
    _lookups = _Lookups()
    _watchdog = _Watchdog()
    _state = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


# --------------------------------------------------------------------------------------------
# Connections pinned to the checked address
# --------------------------------------------------------------------------------------------


class _PinnedConnectionMixin:
    """Connect to the addresses the current attempt checked, never resolving the host again.

    The host name stays the connection's host, so the Host header, TLS SNI and certificate
    verification still use it.
    """

    _watched_by: _Attempt | None = None

    def _new_conn(self) -> socket.socket:
        conn: Any = self
        attempt = _current_attempt()
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
        attempt = _current_attempt()
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
    attempt: _Attempt, port: int, options: Sequence[tuple[int, int, int | bytes]] | None
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
    attempt: _Attempt,
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
    if not _address_allowed(peer, networks):
        raise TransportError(_BLOCKED_MESSAGE, permanent=True)


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
# Mozilla's bundle, as requests uses: the system store may differ between hosts.
_CA_BUNDLE = certifi.where()


def _pool_manager() -> urllib3.PoolManager:
    # urllib3 itself rather than a requests.Session: the Session's per-request work (merging
    # settings, cookies, hooks, building a Response) cost more CPU than the HTTP exchange, and
    # its cookie jar would carry one merchant's cookies to the next URL on the same thread.
    manager: urllib3.PoolManager | None = getattr(_state, "manager", None)
    if manager is None:
        # No proxy or netrc is read from the environment: they would bypass the SSRF guard.
        manager = urllib3.PoolManager(
            num_pools=10, maxsize=1, retries=False, cert_reqs="CERT_REQUIRED", ca_certs=_CA_BUNDLE
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


def _exchange(method: str, target: _Target, body: bytes | None, headers: dict[str, str]) -> _Reply:
    remaining = _current_attempt().remaining()
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


def _outgoing_headers(headers: dict[str, str], target: _Target) -> HTTPHeaderDict:
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


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

# Checked in order against every exception of the chain; the first match wins.
_ERROR_MESSAGES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (ssl.SSLCertVerificationError, "certificate verify failed"),
    (ConnectionRefusedError, "connection refused"),
    (http.client.RemoteDisconnected, "connection closed by server without a response"),
    (http.client.LineTooLong, "invalid response from server (line too long)"),
    (http.client.BadStatusLine, "invalid response from server (bad status line)"),
    (urllib3.exceptions.InvalidChunkLength, "invalid response from server (bad chunked encoding)"),
    (urllib3.exceptions.DecodeError, "invalid response from server (bad content encoding)"),
    (http.client.IncompleteRead, "connection closed before the response was complete"),
    (ssl.SSLError, "TLS handshake failed"),
    (
        (ConnectionResetError, ConnectionAbortedError, BrokenPipeError),
        "connection reset",
    ),
)
_ERRNO_MESSAGES = {
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
}


def _translate(exc: Exception, cut_by_deadline: bool, limit: float) -> TransportError:
    chain = _exception_chain(exc)
    if cut_by_deadline or any(_is_timeout(e) for e in chain):
        return _timeout_error(limit)
    for kinds, message in _ERROR_MESSAGES:
        if any(isinstance(e, kinds) for e in chain):
            return TransportError(message)
    for e in chain:
        if isinstance(e, OSError) and e.errno in _ERRNO_MESSAGES:
            return TransportError(_ERRNO_MESSAGES[e.errno])
        if isinstance(e, http.client.HTTPException):
            return TransportError(_http_exception_message(e))
    return _fallback_error(chain)


def _fallback_error(chain: list[BaseException]) -> TransportError:
    invalid_url = (requests.exceptions.InvalidURL, urllib3.exceptions.LocationParseError)
    if any(isinstance(e, invalid_url) for e in chain):
        return TransportError("invalid URL", permanent=True)
    if any(isinstance(e, requests.exceptions.InvalidHeader) for e in chain):
        return TransportError("invalid request header", permanent=True)
    if any(isinstance(e, (OSError, requests.exceptions.ConnectionError)) for e in chain):
        return TransportError("connection failed")
    return TransportError(f"request failed ({type(chain[0]).__name__})")


def _http_exception_message(exc: http.client.HTTPException) -> str:
    if "headers" in str(exc):
        return "invalid response from server (too many headers)"
    return "invalid response from server"


def _is_timeout(exc: BaseException) -> bool:
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 but is no timeout.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(
        exc, (TimeoutError, urllib3.exceptions.TimeoutError, requests.exceptions.Timeout)
    )


def _exception_chain(exc: BaseException) -> list[BaseException]:
    # requests and urllib3 wrap the real cause in causes, contexts, `reason` or args.
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 32:
        current = pending.pop(0)
        if any(current is known for known in seen):
            continue
        seen.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args)
        pending.extend(e for e in linked if isinstance(e, BaseException))
    return seen


def _timeout_error(limit: float) -> TransportError:
    return TransportError(f"timed out after {limit:g} s", status=408, permanent=False)


def _clamp_timeout(timeout: float) -> float:
    if math.isnan(timeout) or timeout > MAX_TIMEOUT:
        return MAX_TIMEOUT
    # Zero or less would fail every attempt before it starts; treat it as "as short as sane".
    return timeout if timeout > 0 else _MIN_TIMEOUT
