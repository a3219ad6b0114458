"""DNS lookups of lib.http: slow names of one merchant never starve anyone else's.

Host names go through a stub resolver (the ``lib.http.resolve`` seam) that hangs for
"slow" names until the test ends; the real getaddrinfo is limited to numeric hosts, and the one
receiver is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from lib import http
from lib.http import dns

LOOPBACK = http.parse_networks(["127.0.0.0/8", "::1/128"])


@pytest.fixture(autouse=True)
def _numeric_dns_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let getaddrinfo parse numeric hosts but never ask a DNS server."""
    real_getaddrinfo = socket.getaddrinfo

    def numeric_only(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        return real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)


class HangingResolver:
    """Names starting with "slow" hang until released; any other name is 127.0.0.1 at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []
        self.hanging = 0
        self._lock = threading.Lock()

    def __call__(self, host: str, port: int) -> list[Any]:
        with self._lock:
            self.calls.append(host)
        if host.startswith("slow"):
            with self._lock:
                self.hanging += 1
            try:
                self.release.wait(30)
            finally:
                with self._lock:
                    self.hanging -= 1
        return [ip_address("127.0.0.1")]

    def slow_calls(self) -> int:
        with self._lock:
            return sum(1 for host in self.calls if host.startswith("slow"))


@pytest.fixture
def hanging_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[HangingResolver]:
    resolver = HangingResolver()
    monkeypatch.setattr(http, "resolve", resolver)
    yield resolver
    # Let the stuck lookups end before the next test, which could otherwise join them.
    resolver.release.set()
    wait_until(lambda: dns._lookups.running() == 0)


def post(url: str, timeout: float) -> http.HttpResult:
    return http.post(url, b"{}", {}, timeout=timeout, allowed_networks=LOOPBACK)


def post_all_and_time_out(urls: list[str], timeout: float) -> list[str]:
    """POST to every URL at once and return the error messages (all should time out)."""

    def attempt(url: str) -> str:
        try:
            post(url, timeout)
        except http.TransportError as exc:
            return exc.message
        return "answered"

    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        return list(pool.map(attempt, urls))


def wait_until(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_it_resolves_a_fast_name_while_slow_lookups_hang(
    hanging_dns: HangingResolver, httpserver_ipv4: HTTPServer
) -> None:
    # Sixteen deliveries to names whose DNS never answers: each gives up at its deadline, but
    # getaddrinfo cannot be interrupted, so their lookups keep going.
    httpserver_ipv4.expect_request("/hook", method="POST").respond_with_data(b"fast")
    slow_urls = [f"http://slow-{i}.example:{httpserver_ipv4.port}/hook" for i in range(16)]

    errors = post_all_and_time_out(slow_urls, timeout=0.3)

    assert errors == ["timed out after 0.3 s"] * 16
    started = time.monotonic()
    result = post(f"http://fast.example:{httpserver_ipv4.port}/hook", timeout=2)
    elapsed = time.monotonic() - started

    assert (result.status, result.body) == (200, b"fast")
    assert elapsed < 1
    assert len(httpserver_ipv4.log) == 1
    assert hanging_dns.hanging >= 8  # the slow lookups really were still stuck


def test_it_runs_few_lookups_for_a_host_name_that_hangs(
    hanging_dns: HangingResolver, httpserver_ipv4: HTTPServer
) -> None:
    # One merchant, forty deliveries to the same hanging name: they share a few lookups
    # instead of taking a thread each, and everyone else still gets through.
    httpserver_ipv4.expect_request("/hook", method="POST").respond_with_data(b"fast")
    slow_url = f"http://slow.example:{httpserver_ipv4.port}/hook"

    errors = post_all_and_time_out([slow_url] * 40, timeout=0.3)
    errors += post_all_and_time_out([slow_url] * 40, timeout=0.3)

    assert errors == ["timed out after 0.3 s"] * 80
    assert hanging_dns.slow_calls() <= 4
    result = post(f"http://fast.example:{httpserver_ipv4.port}/hook", timeout=2)
    assert result.body == b"fast"


def test_it_answers_every_caller_of_a_shared_lookup(
    hanging_dns: HangingResolver, httpserver_ipv4: HTTPServer
) -> None:
    # Callers that joined a lookup in flight get its answer once it comes, within their own
    # deadline: a slow-but-working name is not turned into timeouts by the sharing.
    httpserver_ipv4.expect_request("/hook", method="POST").respond_with_data(b"late")
    slow_url = f"http://slow.example:{httpserver_ipv4.port}/hook"

    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(post, slow_url, 5) for _ in range(10)]
        wait_until(lambda: hanging_dns.hanging >= 1)
        time.sleep(0.2)
        hanging_dns.release.set()
        results = [future.result() for future in futures]

    assert [r.body for r in results] == [b"late"] * 10
    assert hanging_dns.slow_calls() <= 4


def test_it_still_times_out_a_lookup_that_hangs(hanging_dns: HangingResolver) -> None:
    started = time.monotonic()
    with pytest.raises(http.TransportError) as caught:
        post("http://slow.example:9/hook", timeout=0.5)
    elapsed = time.monotonic() - started

    assert (caught.value.message, caught.value.status) == ("timed out after 0.5 s", 408)
    assert elapsed < 1.5


def test_it_checks_a_url_with_a_hanging_host_without_blocking_others(
    hanging_dns: HangingResolver,
) -> None:
    # check_url runs at save time with its own 10-second lookup deadline.
    errors = post_all_and_time_out([f"http://slow-{i}.example:9/" for i in range(16)], 0.3)
    assert errors == ["timed out after 0.3 s"] * 16

    started = time.monotonic()
    http.check_url("http://fast.example/", require_https=False, allowed_networks=LOOPBACK)

    assert time.monotonic() - started < 1


def test_it_bounds_stuck_lookup_threads_and_frees_them_when_they_end(
    hanging_dns: HangingResolver, httpserver_ipv4: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The global cap on lookup threads, made small: once it is full of stuck lookups a new
    # one waits for a thread until its deadline, and gets one as soon as a stuck lookup ends.
    monkeypatch.setattr(dns, "_DNS_MAX_THREADS", 3)
    httpserver_ipv4.expect_request("/hook", method="POST").respond_with_data(b"fast")
    fast_url = f"http://fast.example:{httpserver_ipv4.port}/hook"

    errors = post_all_and_time_out([f"http://slow-{i}.example:9/" for i in range(6)], 0.3)
    assert errors == ["timed out after 0.3 s"] * 6
    assert (hanging_dns.slow_calls(), dns._lookups.running()) == (3, 3)
    with pytest.raises(http.TransportError) as caught:
        post(fast_url, timeout=0.3)
    assert caught.value.message == "timed out after 0.3 s"

    hanging_dns.release.set()
    wait_until(lambda: dns._lookups.running() == 0)
    assert post(fast_url, timeout=2).body == b"fast"


def test_it_resolves_on_the_event_loop_without_blocking_it_or_other_names(
    hanging_dns: HangingResolver, httpserver_ipv4: HTTPServer
) -> None:
    # The worker's sending core: 40 sends to one merchant's hanging name wait on DNS (at most
    # 4 lookups for that name), while another name's sends on the same loop go through.
    import asyncio

    from lib.http.aio import AsyncClient

    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    port = httpserver_ipv4.port

    async def run() -> tuple[list[Any], float]:
        client = AsyncClient()
        try:
            stuck = [
                asyncio.ensure_future(
                    client.post(f"http://slow.example:{port}/hook", b"{}", {},
                                timeout=2, allowed_networks=LOOPBACK)
                )
                for _ in range(40)
            ]  # fmt: skip
            await asyncio.sleep(0.2)
            started = time.monotonic()
            fine = await asyncio.gather(
                *[
                    client.post(f"http://ok{n}.example:{port}/hook", b"{}", {},
                                timeout=5, allowed_networks=LOOPBACK)
                    for n in range(10)
                ]
            )  # fmt: skip
            took = time.monotonic() - started
            failed = await asyncio.gather(*stuck, return_exceptions=True)
            return [*fine, *failed], took
        finally:
            await client.close()

    results, took = asyncio.run(run())

    assert [r.status for r in results[:10]] == [200] * 10
    assert all(isinstance(r, http.TransportError) and r.status == 408 for r in results[10:])
    assert took < 1.5  # not behind the hanging lookups (they wait 2 s)
    assert hanging_dns.hanging <= 4  # one name holds at most four lookup threads
