"""DNS for outbound requests: the resolver seam, and lookups bound by the caller's deadline.

Every connection the package makes goes to an address that came from :func:`resolve` and was
then checked, so this is where tests put their stub resolver: they replace
``lib.http.resolve``, the attribute of the package, and :func:`lookup` calls whatever
that attribute is at call time.

getaddrinfo cannot be interrupted, so a lookup that outlives its caller's deadline keeps its
thread until the system resolver gives up. A fixed pool let eight such lookups (one merchant's
hanging name server) hold every thread while everyone else's lookups queued behind them and
timed out (issue 13, item 5). So each lookup gets a fresh daemon thread and a caller waits only
until its own deadline; stuck threads are bounded per host name and overall instead of shared.
There is no answer cache: every request resolves again, and connects to what it just checked.

This module imports no other module of the package.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys
import threading
import time
from concurrent.futures import Future
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address

# Lookup threads alive at once, stuck ones included: for all host names, and for one host name
# whatever the port. A caller joins a lookup of the same name and port started less than
# _DNS_JOIN_SECONDS ago (or the youngest one once the host is at its cap) instead of starting
# another: healthy names then cost one thread per burst, hanging ones at most four.
_DNS_MAX_THREADS = 256
_DNS_MAX_PER_HOST = 4
_DNS_JOIN_SECONDS = 1.0


def resolve(host: str, port: int) -> list[IPAddress]:
    """Resolve a host name to its IP addresses, in the order the system prefers them.

    Every connection made by the package goes to an address returned here and checked, so
    tests can replace it with a stub resolver: replace ``lib.http.resolve``, the
    attribute of the package, which :func:`lookup` reads at call time.

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


def lookup(host: str, port: int, timeout: float) -> list[IPAddress]:
    """Resolve a host name within ``timeout`` seconds, without starving other host names.

    A numeric address is returned as is, without a lookup.

    Raises:
        TimeoutError: No answer within the timeout (the lookup may go on in its thread).
        OSError, ValueError: Whatever the resolver raised.
    """
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    return _lookups.lookup(host, port, timeout)


async def lookup_async(host: str, port: int, timeout: float) -> list[IPAddress]:
    """:func:`lookup` for an event loop: the loop never blocks on a lookup or a free thread.

    Raises:
        TimeoutError: No answer within the timeout (the lookup may go on in its thread).
        OSError, ValueError: Whatever the resolver raised.
    """
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    return await _lookups.lookup_async(host, port, timeout)


def literal_address(host: str) -> IPAddress | None:
    """The address a host is written as ("127.0.0.1", "::1"), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _call_resolver(host: str, port: int) -> list[IPAddress]:
    # The package's attribute, looked up at call time, so a stub resolver takes effect.
    resolver = sys.modules[__package__].resolve
    return resolver(host, port)


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
        assert future is not None  # it waits for a thread rather than answer None
        # The shared answer is copied: every caller may reorder or extend its own list.
        return list(future.result(timeout=max(deadline - time.monotonic(), 0.0)))

    async def lookup_async(self, host: str, port: int, timeout: float) -> list[IPAddress]:
        deadline = time.monotonic() + max(timeout, 0.0)
        while (future := self._start_or_join(host, port, deadline, wait=False)) is None:
            await asyncio.sleep(0.05)  # every lookup thread is stuck: poll, never block the loop
        # Shielded: a caller that gives up must not cancel a lookup other callers joined.
        answer = asyncio.shield(asyncio.wrap_future(future))
        return list(await asyncio.wait_for(answer, max(deadline - time.monotonic(), 0.0)))

    def _start_or_join(
        self, host: str, port: int, deadline: float, *, wait: bool = True
    ) -> Future[list[IPAddress]] | None:
        """The lookup to wait for; None when `wait` is False and no thread is free now."""
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
                if not wait:
                    return None
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


def _reset_after_fork() -> None:
    # Job runners fork: the lookup threads of the parent do not exist in the child.
    global _lookups
    _lookups = _Lookups()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
