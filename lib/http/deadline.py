"""The deadline of an attempt: one watchdog thread that cuts attempts that run late.

A socket timeout only bounds each read or write, so a server dripping one byte a second would
never time out; and getaddrinfo, TLS and urllib3 each have their own waits. So every attempt
gets one total deadline (DNS, connect, TLS, send, headers and body together) and every socket
it opens is watched: at the deadline the watchdog shuts the sockets down, which wakes whatever
is blocked on them. One thread serves all attempts of the process, from a heap ordered by
deadline, so a worker sending thousands of requests does not need thousands of timers.

The attempt a thread is working on is kept in a thread-local (:func:`current_attempt`): the
pinned connections of ``client`` use it to connect only to the addresses it checked.

Imports only ``addresses`` (for types) and ``errors`` of this package.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time

from lib.http.addresses import IPNetwork
from lib.http.dns import IPAddress
from lib.http.errors import TransportError

_MIN_SOCKET_TIMEOUT = 0.01


class Attempt:
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


class Watchdog:
    """A heap of attempts ordered by deadline, served by a single daemon thread."""

    # Finished attempts are dropped in bulk once they are most of the heap: left until their
    # deadline, a worker sending 1,000 requests a second with 30-second deadlines held 30,000
    # of them (the benchmark's memory growth).
    _COMPACT_AT = 256

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start empty, with no thread (after a fork, the parent's thread is not ours)."""
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Attempt]] = []
        self._finished = 0  # finished attempts still in the heap
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None

    def watched(self) -> int:
        """How many attempts the heap holds, finished ones included."""
        with self._cond:
            return len(self._heap)

    def discard(self, attempt: Attempt) -> None:
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

    def add(self, attempt: Attempt) -> None:
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

    def _next_due(self) -> Attempt:
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


watchdog = Watchdog()
_current = threading.local()


def set_current(attempt: Attempt | None) -> None:
    """Make ``attempt`` the one this thread's connections obey; None once it is over."""
    _current.attempt = attempt


def current_attempt() -> Attempt:
    """The attempt this thread is sending; connections opened outside one are refused."""
    attempt: Attempt | None = getattr(_current, "attempt", None)
    if attempt is None:
        # Only request() may open connections: anything else would skip the SSRF check.
        raise TransportError("internal error: connection outside a checked request", permanent=True)
    return attempt


def _reset_after_fork() -> None:
    # Job runners fork: locks and threads of the parent must not be inherited. The watchdog is
    # reset in place, so modules that hold it (the package re-exports it) see the new state.
    global _current
    watchdog.reset()
    _current = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
