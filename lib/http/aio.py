"""The worker's sending core: the same exchange as ``client``, on an event loop.

A send that waits (a hanging, slow or distant receiver) costs a socket here, not a thread: one
worker process keeps thousands of requests in flight on one event loop. Every guarantee of the
synchronous client holds, by the same code where it can be shared:

* the host is resolved (asynchronously, bound by the request's deadline and per host name,
  ``dns.lookup_async``) and every address checked by the same policy before anything
  connects; the connector's resolver then hands aiohttp exactly the checked addresses, so it
  never resolves again (no DNS rebinding);
* kept-alive connections are pooled per address policy: a connection is only ever reused under
  the policy that checked the address it was opened to;
* one total deadline per request (DNS, connect, TLS, send, headers and body together);
* the body read in chunks, decompressed by us with a bound, capped at MAX_RESPONSE_BYTES;
* no redirects, verified TLS (``tls``), no proxy, netrc or cookies, headers validated;
* the same error mapping (``errors.translate``) and the same results (``HttpResult``).

aiohttp was chosen by measurement (``bench/clients.py``): with its C parser it carries about
three times the requests per second of a ``requests`` loop on one core, while httpx's async
client fell to a tenth of that at 100 requests in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import socket
import time
import zlib
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict
from requests.utils import check_header_validity
from yarl import URL

from lib.http.addresses import (
    IPNetwork,
    Target,
    checked_addresses_async,
    effective_networks,
    parse_target,
)
from lib.http.client import (
    _DEFAULT_HEADERS,
    MAX_RESPONSE_BYTES,
    MAX_TIMEOUT,
    HttpResult,
    _clamp_timeout,
)
from lib.http.dns import IPAddress, literal_address
from lib.http.errors import TransportError, timeout_error, translate
from lib.http.tls import ssl_context

_CHUNK_BYTES = 16 * 1024
# An IPv4 address in a form other than dotted decimal: "2130706433", "0x7f.1", "0177.0.0.1".
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)
_MAX_HEADERS = 100  # as the synchronous client (http.client's _MAXHEADERS)

# The addresses the current request checked: the connector's resolver answers with these.
_checked: contextvars.ContextVar[list[IPAddress] | None] = contextvars.ContextVar(
    "webhook_checked_addresses", default=None
)


class _CheckedResolver(AbstractResolver):
    """Answers aiohttp's connector with the addresses the request checked, never resolving."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = _checked.get()
        if not addresses:
            # Only AsyncClient.request may open connections: anything else skipped the check.
            raise TransportError(
                "internal error: connection outside a checked request", permanent=True
            )
        return [
            {
                "hostname": host,
                "host": str(ip),
                "port": port,
                "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for ip in addresses
        ]

    async def close(self) -> None:
        return None


class AsyncClient:
    """One event loop's HTTP client for webhook requests (make it, use it and close it there).

    Args:
        limit: connections open at once (0: no limit but the process's file descriptors).
    """

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self._sessions: dict[tuple[IPNetwork, ...], aiohttp.ClientSession] = {}

    def _session(self, networks: Sequence[IPNetwork]) -> aiohttp.ClientSession:
        # One pool per address policy: a kept-alive connection was checked under this policy.
        key = tuple(networks)
        session = self._sessions.get(key)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.limit,
                limit_per_host=0,
                resolver=_CheckedResolver(),
                use_dns_cache=False,
                ssl=ssl_context(),
                keepalive_timeout=15,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # decompressed by us, with a bound
                trust_env=False,  # no proxy or netrc from the environment
                cookie_jar=aiohttp.DummyCookieJar(),  # no merchant's cookies to the next URL
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
                timeout=aiohttp.ClientTimeout(total=None),
                max_field_size=8190,
                max_line_size=8190,
                max_headers=_MAX_HEADERS,
            )
            self._sessions[key] = session
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        timeout: float = MAX_TIMEOUT,
        allowed_networks: Sequence[IPNetwork] | None = None,
    ) -> HttpResult:
        """POST a webhook body; the same contract as ``lib.http.post``.

        Raises:
            TransportError: Nothing usable came back, or the URL or its address was refused.
        """
        return await self.request(
            "POST", url, body, headers, timeout=timeout, allowed_networks=allowed_networks
        )

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        *,
        timeout: float = MAX_TIMEOUT,
        allowed_networks: Sequence[IPNetwork] | None = None,
    ) -> HttpResult:
        """Send one request with every protection of the package; see ``lib.http.request``."""
        started = time.monotonic()
        limit = _clamp_timeout(timeout)
        target = parse_target(url)
        networks = effective_networks(allowed_networks)
        outgoing = _outgoing_headers(headers, target)
        try:
            async with asyncio.timeout(limit):
                addresses = await checked_addresses_async(target, networks, started + limit, limit)
                token = _checked.set(addresses)
                try:
                    status, reply_headers, content, truncated = await self._exchange(
                        method, target, body, outgoing, networks
                    )
                finally:
                    _checked.reset(token)
        except TransportError:
            raise
        except aiohttp.ClientResponseError as exc:
            if "Too many headers" in str(exc):  # aiohttp's parser counts them for us
                raise TransportError("invalid response from server (too many headers)") from exc
            raise translate(exc, False, limit) from exc
        except TimeoutError as exc:
            raise timeout_error(limit) from exc
        except Exception as exc:
            raise translate(exc, False, limit) from exc
        duration_ms = int((time.monotonic() - started) * 1000)
        return HttpResult(status, reply_headers, content, truncated, duration_ms)

    async def _exchange(
        self,
        method: str,
        target: Target,
        body: bytes | None,
        headers: CIMultiDict[str],
        networks: Sequence[IPNetwork],
    ) -> tuple[int, dict[str, str], bytes, bool]:
        url = URL(target.url, encoded=True)
        if literal_address(target.host) is None and _NUMERIC_HOST.match(target.host):
            # "2130706433", "0177.0.0.1": aiohttp refuses these forms of an address, so the
            # request goes to the checked address, with the Host header as written.
            headers["Host"] = url.raw_authority
            url = url.with_host(str(_checked.get()[0]))
        response = await self._session(networks).request(
            method.upper(),
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            compress=None,
        )
        try:
            content, truncated = await _read_capped(response)
        except BaseException:
            response.close()  # reading the rest could take the whole deadline: drop it
            raise
        if truncated:
            response.close()
        else:
            response.release()
        reply_headers = {k: v for k, v in response.headers.items()}
        return response.status, reply_headers, content, truncated


def _outgoing_headers(headers: dict[str, str], target: Target) -> CIMultiDict[str]:
    # Case-insensitive, so a caller's "user-agent" replaces ours instead of adding a second.
    outgoing: CIMultiDict[str] = CIMultiDict(_DEFAULT_HEADERS)
    for name, value in headers.items():
        check_header_validity((name, value))
        outgoing[name] = value
    if target.authorization is not None and "authorization" not in outgoing:
        outgoing["Authorization"] = target.authorization
    return outgoing


def _decoder(encoding: str) -> Any:
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Deflate()
    return None


class _Deflate:
    """'deflate' is zlib-wrapped by the standard and raw in some servers: try both."""

    def __init__(self) -> None:
        self._inner: Any = None
        self._first = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            self._inner = zlib.decompressobj()
            try:
                return self._inner.decompress(data, max_length)
            except zlib.error:
                self._inner = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._inner.decompress(data, max_length)

    @property
    def unconsumed_tail(self) -> bytes:
        return self._inner.unconsumed_tail if self._inner is not None else b""


async def _read_capped(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """At most MAX_RESPONSE_BYTES of the body, decompressed; never inflates more than that."""
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    buffer = bytearray()
    wanted = MAX_RESPONSE_BYTES + 1
    while len(buffer) < wanted:
        chunk = await response.content.read(_CHUNK_BYTES)
        if not chunk:
            return bytes(buffer), False
        if decoder is None:
            buffer += chunk
            continue
        try:
            buffer += decoder.decompress(chunk, wanted - len(buffer))
            while decoder.unconsumed_tail and len(buffer) < wanted:
                buffer += decoder.decompress(decoder.unconsumed_tail, wanted - len(buffer))
        except zlib.error as exc:
            raise TransportError("invalid response from server (bad content encoding)") from exc
    return bytes(buffer[:MAX_RESPONSE_BYTES]), True
