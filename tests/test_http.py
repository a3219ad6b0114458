"""lib.http against real servers on 127.0.0.1, well-behaved and not.

No test sends a packet anywhere else: host names go through stub resolvers, the real
getaddrinfo is limited to numeric hosts, and connections to refused addresses are trapped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import re
import socket
import socketserver
import ssl
import subprocess
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from ipaddress import ip_address
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from lib import http
from lib.http import client as http_client
from lib.http.aio import AsyncClient

LOOPBACK = http.parse_networks(["127.0.0.0/8", "::1/128"])
PUBLIC_IP = "93.184.215.14"
Handle = Callable[[socket.socket, threading.Event], None]


# --- guards: no DNS, no stray connections ------------------------------------------------


@pytest.fixture(autouse=True)
def _numeric_dns_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let getaddrinfo parse numeric hosts but never ask a DNS server."""
    real_getaddrinfo = socket.getaddrinfo

    def numeric_only(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        return real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)


class StubResolver:
    """Answers every host name with fixed addresses and records the questions."""

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[Any]:
        self.calls.append((host, port))
        if self.answers and isinstance(self.answers[0], Exception):
            raise self.answers[0]
        return [ip_address(str(a)) for a in self.answers]


@pytest.fixture
def stub_dns(monkeypatch: pytest.MonkeyPatch) -> Callable[..., StubResolver]:
    def install(*answers: str | Exception) -> StubResolver:
        resolver = StubResolver(*answers)
        monkeypatch.setattr(http, "resolve", resolver)
        return resolver

    return install


@pytest.fixture
def connect_trap(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every outgoing connect() and refuse it, so no packet leaves."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise ConnectionRefusedError(111, "trapped by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


# --- misbehaving servers -------------------------------------------------------------------


class RawServer:
    """A threaded TCP server on 127.0.0.1 that counts connections."""

    def __init__(self, handler: type[socketserver.BaseRequestHandler]) -> None:
        self.stop = threading.Event()
        self.connections = 0
        self._lock = threading.Lock()
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.owner = self  # type: ignore[attr-defined]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self) -> None:
        with self._lock:
            self.connections += 1

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


class FunctionHandler(socketserver.BaseRequestHandler):
    handle_function: Handle

    def handle(self) -> None:
        owner: RawServer = self.server.owner  # type: ignore[attr-defined]
        owner.count()
        # OSError: the client hung up on us, which is what most of these tests expect.
        with contextlib.suppress(OSError):
            type(self).handle_function(self.request, owner.stop)


@pytest.fixture
def serve() -> Iterator[Callable[[Handle], RawServer]]:
    servers: list[RawServer] = []

    def start(function: Handle) -> RawServer:
        handler = type("Handler", (FunctionHandler,), {"handle_function": staticmethod(function)})
        server = RawServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def read_request_head(conn: socket.socket) -> bytes:
    """Read a whole request, body included: closing on unread data would reset the connection."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    missing = int(length.group(1)) - len(body) if length else 0
    while missing > 0:
        chunk = conn.recv(missing)
        if not chunk:
            break
        missing -= len(chunk)
    return head


def drip(conn: socket.socket, stop: threading.Event, pieces: Iterable[bytes]) -> None:
    for piece in pieces:
        if stop.wait(0.2):
            return
        conn.sendall(piece)


def drip_status_line(conn: socket.socket, stop: threading.Event) -> None:
    read_request_head(conn)
    head = b"HTTP/1.1 200 OK\r\nX-Slow: "
    drip(conn, stop, itertools.chain((bytes([b]) for b in head), itertools.repeat(b"a")))


def drip_body(conn: socket.socket, stop: threading.Event) -> None:
    read_request_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    drip(conn, stop, itertools.repeat(b"a"))


def drip_body_until_close(conn: socket.socket, stop: threading.Event) -> None:
    read_request_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    drip(conn, stop, itertools.repeat(b"a"))


def never_answer(conn: socket.socket, stop: threading.Event) -> None:
    read_request_head(conn)
    stop.wait(10)


def bad_status_line(conn: socket.socket, stop: threading.Event) -> None:
    read_request_head(conn)
    conn.sendall(b"HELLO FROM A TOASTER\r\n\r\n")


def too_many_headers(conn: socket.socket, stop: threading.Event) -> None:
    read_request_head(conn)
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    conn.sendall(b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 0\r\n\r\n")


def endless_chunked(conn: socket.socket, stop: threading.Event) -> None:
    read_request_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
    while not stop.is_set():
        conn.sendall(chunk)


def huge_declared_body(conn: socket.socket, stop: threading.Event) -> None:
    read_request_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\n\r\n")
    block = b"y" * 65536
    while not stop.is_set():
        conn.sendall(block)


class KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: "/big" answers 100 KiB, anything else "ok"."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.server.owner.count()  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"x" * (100 * 1024) if self.path == "/big" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # OSError: the client stopped reading the big body, as it should.
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def keep_alive_server() -> Iterator[RawServer]:
    server = RawServer(KeepAliveHandler)
    yield server
    server.close()


class AsyncRunner:
    """The worker's asynchronous client on an event loop of its own, called from a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = AsyncClient()

    def post(self, *args: Any, **kwargs: Any) -> http.HttpResult:
        future = asyncio.run_coroutine_threadsafe(self.client.post(*args, **kwargs), self.loop)
        return future.result(timeout=60)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


_client: dict[str, Any] = {"runner": None}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test runs against both clients (the synchronous one of Send test and loyalty
    calls, the worker's asynchronous one), except those about one client's own machinery."""
    only_sync = metafunc.definition.get_closest_marker("one_client") is not None
    metafunc.parametrize("client_kind", ["sync"] if only_sync else ["sync", "async"], indirect=True)


@pytest.fixture(autouse=True)
def client_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    kind: str = getattr(request, "param", "sync")
    _client["runner"] = AsyncRunner() if kind == "async" else None
    yield kind
    if _client["runner"] is not None:
        _client["runner"].close()
    _client["runner"] = None


def send(url: str, body: bytes, headers: dict[str, str], **kwargs: Any) -> http.HttpResult:
    """POST with the client under test."""
    if _client["runner"] is not None:
        return _client["runner"].post(url, body, headers, **kwargs)
    return http.post(url, body, headers, **kwargs)


def post(url: str, body: bytes = b"{}", **kwargs: Any) -> http.HttpResult:
    kwargs.setdefault("allowed_networks", LOOPBACK)
    return send(url, body, kwargs.pop("headers", {}), **kwargs)


def timed_failure(url: str, **kwargs: Any) -> tuple[http.TransportError, float]:
    started = time.monotonic()
    with pytest.raises(http.TransportError) as caught:
        post(url, **kwargs)
    return caught.value, time.monotonic() - started


# --- ordinary exchanges --------------------------------------------------------------------


def test_it_returns_status_body_and_headers(httpserver_ipv4: HTTPServer) -> None:
    httpserver_ipv4.expect_request(
        "/hook", method="POST", data=b'{"id": 1}', headers={"X-Signature": "v1,abc"}
    ).respond_with_data(b"thanks", status=201, headers={"X-Reply": "yes"})

    result = post(httpserver_ipv4.url_for("/hook"), b'{"id": 1}', headers={"X-Signature": "v1,abc"})

    assert (result.status, result.body, result.truncated) == (201, b"thanks", False)
    assert result.headers["X-Reply"] == "yes"
    sent, _ = httpserver_ipv4.log[0]
    assert sent.headers["User-Agent"] == "POS-Webhooks/0.1.0"


def test_it_lets_the_caller_set_the_user_agent(httpserver_ipv4: HTTPServer) -> None:
    httpserver_ipv4.expect_request("/hook").respond_with_data(b"ok")

    post(httpserver_ipv4.url_for("/hook"), headers={"user-agent": "Custom/2"})

    sent, _ = httpserver_ipv4.log[0]
    assert sent.headers["User-Agent"] == "Custom/2"


def test_it_sends_basic_auth_from_the_url_and_strips_it(httpserver_ipv4: HTTPServer) -> None:
    httpserver_ipv4.expect_request("/hook").respond_with_data(b"ok")
    url = f"http://us%20er:p%40ss%3Aw@127.0.0.1:{httpserver_ipv4.port}/hook?x=1"

    result = post(url)

    sent, _ = httpserver_ipv4.log[0]
    expected = "Basic " + base64.b64encode(b"us er:p@ss:w").decode()
    assert result.status == 200
    assert sent.headers["Authorization"] == expected
    assert sent.headers["Host"] == f"127.0.0.1:{httpserver_ipv4.port}"
    assert sent.full_path == "/hook?x=1"


def test_it_returns_a_redirect_instead_of_following_it(httpserver_ipv4: HTTPServer) -> None:
    httpserver_ipv4.expect_request("/old").respond_with_data(
        b"", status=302, headers={"Location": "/new"}
    )
    httpserver_ipv4.expect_request("/new").respond_with_data(b"followed")

    result = post(httpserver_ipv4.url_for("/old"))

    assert result.status == 302
    assert result.headers["Location"] == "/new"
    assert [sent.path for sent, _ in httpserver_ipv4.log] == ["/old"]


def test_it_truncates_a_10_mib_body_to_64_kib(httpserver_ipv4: HTTPServer) -> None:
    httpserver_ipv4.expect_request("/big").respond_with_data(b"x" * (10 * 1024 * 1024))

    result = post(httpserver_ipv4.url_for("/big"))

    assert result.status == 200
    assert result.body == b"x" * http.MAX_RESPONSE_BYTES
    assert result.truncated is True


def test_it_keeps_a_body_of_exactly_64_kib_whole(httpserver_ipv4: HTTPServer) -> None:
    httpserver_ipv4.expect_request("/hook").respond_with_data(b"z" * http.MAX_RESPONSE_BYTES)

    result = post(httpserver_ipv4.url_for("/hook"))

    assert (len(result.body), result.truncated) == (http.MAX_RESPONSE_BYTES, False)


def test_it_stops_reading_an_endless_chunked_body(serve: Callable[[Handle], RawServer]) -> None:
    server = serve(endless_chunked)
    started = time.monotonic()

    result = post(server.url(), timeout=10)

    assert (len(result.body), result.truncated) == (http.MAX_RESPONSE_BYTES, True)
    assert time.monotonic() - started < 3


def test_it_does_not_drain_a_huge_declared_body(serve: Callable[[Handle], RawServer]) -> None:
    server = serve(huge_declared_body)
    started = time.monotonic()

    result = post(server.url(), timeout=10)

    assert (len(result.body), result.truncated) == (http.MAX_RESPONSE_BYTES, True)
    assert time.monotonic() - started < 3


def test_it_caps_a_gzip_bomb_without_inflating_it(httpserver_ipv4: HTTPServer) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1024 * 1024)
    bomb = b"".join([compressor.compress(block) for _ in range(128)] + [compressor.flush()])
    httpserver_ipv4.expect_request("/bomb").respond_with_data(
        bomb, headers={"Content-Encoding": "gzip"}
    )

    tracemalloc.start()
    try:
        result = post(httpserver_ipv4.url_for("/bomb"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.body == bytes(http.MAX_RESPONSE_BYTES)
    assert result.truncated is True
    assert peak < 16 * 1024 * 1024  # inflating it all would take 128 MiB


def test_it_decodes_a_gzip_body(httpserver_ipv4: HTTPServer) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    packed = compressor.compress(b"hello " * 100) + compressor.flush()
    httpserver_ipv4.expect_request("/hook").respond_with_data(
        packed, headers={"Content-Encoding": "gzip"}
    )

    result = post(httpserver_ipv4.url_for("/hook"))

    assert (result.body, result.truncated) == (b"hello " * 100, False)


# --- deadlines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "handle",
    [drip_status_line, drip_body, drip_body_until_close],
    ids=["status-line", "body", "body-until-close"],
)
def test_it_cuts_a_drip_feed_at_the_deadline(
    serve: Callable[[Handle], RawServer], handle: Handle
) -> None:
    server = serve(handle)

    error, elapsed = timed_failure(server.url(), timeout=1)

    assert (error.message, error.status, error.permanent) == ("timed out after 1 s", 408, False)
    assert elapsed < 2


def test_it_gives_up_on_a_server_that_never_answers(
    serve: Callable[[Handle], RawServer],
) -> None:
    server = serve(never_answer)

    error, elapsed = timed_failure(server.url(), timeout=0.5)

    assert (error.message, error.status, error.permanent) == ("timed out after 0.5 s", 408, False)
    assert elapsed < 1.5


def test_it_applies_the_deadline_to_a_kept_alive_connection(
    serve: Callable[[Handle], RawServer],
) -> None:
    def first_quick_then_silent(conn: socket.socket, stop: threading.Event) -> None:
        read_request_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        never_answer(conn, stop)

    server = serve(first_quick_then_silent)
    assert post(server.url(), timeout=1).status == 200

    error, elapsed = timed_failure(server.url(), timeout=1)

    assert (error.message, error.status) == ("timed out after 1 s", 408)
    assert server.connections == 1
    assert elapsed < 2


@pytest.mark.one_client
def test_it_forgets_finished_attempts_long_before_their_deadline(
    httpserver_ipv4: HTTPServer,
) -> None:
    # A busy worker finishes thousands of quick requests with 30-second deadlines; keeping
    # each until its deadline grew the worker's memory by a third in the benchmark.
    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    for _ in range(300):
        assert post(httpserver_ipv4.url_for("/hook"), timeout=30).status == 200

    assert http._watchdog.watched() < 256


def test_it_still_cuts_a_late_attempt_after_forgetting_finished_ones(
    serve: Callable[[Handle], RawServer], httpserver_ipv4: HTTPServer
) -> None:
    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    for _ in range(300):
        post(httpserver_ipv4.url_for("/hook"), timeout=30)
    server = serve(never_answer)

    error, elapsed = timed_failure(server.url(), timeout=0.5)

    assert error.status == 408
    assert elapsed < 1.5


# --- low-level errors ----------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_reports_a_refused_connection_without_the_password() -> None:
    url = f"http://merchant:s3cret-pw@127.0.0.1:{closed_port()}/hook"

    error, _ = timed_failure(url)

    assert (error.message, error.status, error.permanent) == ("connection refused", None, False)
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    assert not any("s3cret" in repr(e) or "s3cret" in str(e) for e in chain)


def test_it_reports_a_bad_status_line(serve: Callable[[Handle], RawServer]) -> None:
    server = serve(bad_status_line)

    error, _ = timed_failure(server.url())

    assert error.message == "invalid response from server (bad status line)"
    assert error.permanent is False


def test_it_reports_too_many_headers(serve: Callable[[Handle], RawServer]) -> None:
    server = serve(too_many_headers)

    error, _ = timed_failure(server.url())

    assert error.message == "invalid response from server (too many headers)"


def openssl(command: str, cwd: Path) -> None:
    subprocess.run(["openssl", *command.split()], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A self-signed certificate for 127.0.0.1, and a test CA that signed one for
    hooks.example.com."""
    directory = tmp_path_factory.mktemp("tls")
    new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    openssl(
        f"req -x509 {new_key} -days 2 -keyout self.key -out self.pem -subj /CN=127.0.0.1"
        " -addext subjectAltName=IP:127.0.0.1",
        directory,
    )
    openssl(
        f"req -x509 {new_key} -days 2 -keyout ca.key -out ca.pem -subj /CN=test-ca"
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
        directory,
    )
    openssl(f"req {new_key} -keyout leaf.key -out leaf.csr -subj /CN=hooks.example.com", directory)
    (directory / "leaf.ext").write_text("subjectAltName=DNS:hooks.example.com\n")
    openssl(
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -extfile leaf.ext -out leaf.pem",
        directory,
    )
    return SimpleNamespace(
        self_signed=(directory / "self.pem", directory / "self.key"),
        ca=directory / "ca.pem",
        leaf=(directory / "leaf.pem", directory / "leaf.key"),
    )


def tls_context(cert_and_key: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert_and_key)
    return context


@pytest.fixture
def trust_test_ca(monkeypatch: pytest.MonkeyPatch, certs: SimpleNamespace, settings: Any) -> None:
    # The operator's private CA (WEBHOOK_CA_BUNDLE). A fresh thread state makes the next
    # request build its pool manager with it; the async client reads it per session.
    settings.WEBHOOK_CA_BUNDLE = str(certs.ca)
    monkeypatch.setattr(http_client, "_state", threading.local())


def test_it_refuses_a_self_signed_certificate(
    serve: Callable[[Handle], RawServer], certs: SimpleNamespace
) -> None:
    context = tls_context(certs.self_signed)

    def tls_server(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        with context.wrap_socket(conn, server_side=True) as tls:
            read_request_head(tls)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = serve(tls_server)

    error, _ = timed_failure(f"https://127.0.0.1:{server.port}/hook")

    assert (error.message, error.permanent) == ("certificate verify failed", False)
    assert server.connections == 1


def test_it_verifies_tls_against_the_host_name_while_connecting_to_the_checked_address(
    serve: Callable[[Handle], RawServer],
    stub_dns: Callable[..., StubResolver],
    certs: SimpleNamespace,
    trust_test_ca: None,
) -> None:
    context = tls_context(certs.leaf)
    server_names: list[str | None] = []
    hosts: list[bytes] = []
    context.sni_callback = lambda _sock, name, _context: server_names.append(name)

    def tls_server(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        with context.wrap_socket(conn, server_side=True) as tls:
            head = read_request_head(tls)
            hosts.extend(line for line in head.split(b"\r\n") if line.startswith(b"Host:"))
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")

    server = serve(tls_server)
    stub_dns("127.0.0.1")

    result = post(f"https://hooks.example.com:{server.port}/hook")
    error, _ = timed_failure(f"https://127.0.0.1:{server.port}/hook")

    assert result.body == b"secure"
    assert server_names[0] == "hooks.example.com"
    assert hosts == [f"Host: hooks.example.com:{server.port}".encode()]
    # The same certificate does not match the bare address: verification uses the name.
    assert error.message == "certificate verify failed"


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_it_trusts_the_ca_bundle_the_environment_names(
    serve: Callable[[Handle], RawServer],
    stub_dns: Callable[..., StubResolver],
    certs: SimpleNamespace,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    context = tls_context(certs.leaf)

    def tls_server(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        with context.wrap_socket(conn, server_side=True) as tls:
            read_request_head(tls)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nprivate")

    server = serve(tls_server)
    stub_dns("127.0.0.1")
    url = f"https://hooks.example.com:{server.port}/hook"
    error, _ = timed_failure(url)  # Mozilla's bundle does not know the private CA

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # it comes first, as in requests
    monkeypatch.setenv(variable, str(certs.ca))
    monkeypatch.setattr(http_client, "_state", threading.local())
    if _client["runner"] is not None:
        _client["runner"].close()
        _client["runner"] = AsyncRunner()

    assert error.message == "certificate verify failed"
    assert post(url).body == b"private"


@pytest.mark.parametrize("handle", [drip_status_line, drip_body], ids=["status-line", "body"])
def test_it_cuts_a_drip_feed_over_tls_at_the_deadline(
    serve: Callable[[Handle], RawServer],
    stub_dns: Callable[..., StubResolver],
    certs: SimpleNamespace,
    trust_test_ca: None,
    handle: Handle,
) -> None:
    context = tls_context(certs.leaf)

    def tls_drip(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        with context.wrap_socket(conn, server_side=True) as tls:
            handle(tls, stop)

    server = serve(tls_drip)
    stub_dns("127.0.0.1")

    error, elapsed = timed_failure(f"https://hooks.example.com:{server.port}/hook", timeout=1)

    assert (error.message, error.status) == ("timed out after 1 s", 408)
    assert elapsed < 2


def test_it_cuts_a_slow_tls_handshake_at_the_deadline(
    serve: Callable[[Handle], RawServer],
) -> None:
    def slow_handshake(conn: socket.socket, stop: threading.Event) -> None:
        conn.recv(65536)  # the ClientHello
        # A handshake record announcing 16 KiB, then one byte at a time.
        drip(conn, stop, itertools.chain([b"\x16\x03\x03\x40\x00"], itertools.repeat(b"\x02")))

    server = serve(slow_handshake)

    error, elapsed = timed_failure(f"https://127.0.0.1:{server.port}/hook", timeout=1)

    assert (error.message, error.status) == ("timed out after 1 s", 408)
    assert elapsed < 2


def test_it_refuses_other_schemes_for_good() -> None:
    for url in ("ftp://example.com/hook", "file:///etc/passwd", "gopher://127.0.0.1:70/"):
        with pytest.raises(http.TransportError) as caught:
            post(url)
        assert caught.value.permanent is True
        assert "scheme" in caught.value.message


# --- connection reuse and threads ----------------------------------------------------------


def test_it_reuses_the_connection_for_calls_from_one_thread(
    keep_alive_server: RawServer,
) -> None:
    results = [post(keep_alive_server.url("/small")) for _ in range(2)]

    assert [r.body for r in results] == [b"ok", b"ok"]
    assert keep_alive_server.connections == 1


@pytest.mark.one_client  # aiohttp has the whole 100 KiB by then: its connection is clean to reuse
def test_it_drops_the_connection_after_a_truncated_body(keep_alive_server: RawServer) -> None:
    big = post(keep_alive_server.url("/big"))
    small = post(keep_alive_server.url("/small"))

    assert (big.truncated, small.body) == (True, b"ok")
    assert keep_alive_server.connections == 2


def test_it_serves_concurrent_posts_from_many_threads(httpserver_ipv4: HTTPServer) -> None:
    httpserver_ipv4.expect_request("/echo").respond_with_handler(
        lambda request: Response(b"echo:" + request.get_data())
    )
    url = httpserver_ipv4.url_for("/echo")
    bodies = [f"delivery-{i}".encode() for i in range(20)]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda body: post(url, body), bodies))

    assert [r.status for r in results] == [200] * 20
    assert [r.body for r in results] == [b"echo:" + body for body in bodies]


def test_it_talks_to_ipv6_loopback(httpserver_ipv6: HTTPServer) -> None:
    httpserver_ipv6.expect_request("/hook").respond_with_data(b"v6")

    result = post(f"http://[::1]:{httpserver_ipv6.port}/hook")

    assert result.body == b"v6"


# --- SSRF guard ----------------------------------------------------------------------------

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "0.0.0.0",
    "0.1.2.3",
    "100.64.0.1",
    "100.127.255.254",
    "192.0.0.8",
    "192.0.2.10",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 form of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 form of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 form of 127.0.0.1
    "2002:a00:1::1",  # 6to4 form of 10.0.0.1
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    "2001::1",
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_it_blocks_a_host_resolving_to_a_non_public_address(
    address: str, stub_dns: Callable[..., StubResolver], connect_trap: list[Any]
) -> None:
    resolver = stub_dns(address)

    with pytest.raises(http.TransportError) as caught:
        send("https://hooks.example.com/hook", b"{}", {}, allowed_networks=[])

    assert (caught.value.message, caught.value.permanent) == ("blocked: address not public", True)
    assert resolver.calls == [("hooks.example.com", 443)]
    assert connect_trap == []


@pytest.mark.one_client
@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_it_does_not_count_refused_ranges_as_public(address: str) -> None:
    assert http.is_public_address(ip_address(address)) is False


@pytest.mark.one_client
@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", PUBLIC_IP, "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"],
)
def test_it_counts_public_addresses_as_public(address: str) -> None:
    assert http.is_public_address(ip_address(address)) is True


def test_it_blocks_when_any_resolved_address_is_not_public(
    stub_dns: Callable[..., StubResolver], connect_trap: list[Any]
) -> None:
    stub_dns(PUBLIC_IP, "10.0.0.1")

    with pytest.raises(http.TransportError) as caught:
        send("http://hooks.example.com/", b"{}", {}, allowed_networks=[])

    assert caught.value.message == "blocked: address not public"
    assert connect_trap == []


@pytest.mark.parametrize(
    "host", ["169.254.169.254", "127.0.0.1", "[::ffff:127.0.0.1]", "[::1]", "0.0.0.0"]
)
def test_it_blocks_literal_non_public_addresses(host: str, connect_trap: list[Any]) -> None:
    with pytest.raises(http.TransportError) as caught:
        send(f"http://{host}:8080/latest/meta-data/", b"", {}, allowed_networks=[])

    assert caught.value.message == "blocked: address not public"
    assert connect_trap == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1"])
def test_it_blocks_numeric_forms_of_loopback(
    host: str, keep_alive_server: RawServer, connect_trap: list[Any]
) -> None:
    with pytest.raises(http.TransportError) as caught:
        send(f"http://{host}:{keep_alive_server.port}/small", b"", {}, allowed_networks=[])

    assert caught.value.message == "blocked: address not public"
    assert connect_trap == []
    assert keep_alive_server.connections == 0


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1"])
def test_it_reaches_numeric_forms_of_loopback_when_allowed(
    host: str, keep_alive_server: RawServer
) -> None:
    result = post(f"http://{host}:{keep_alive_server.port}/small")

    assert result.body == b"ok"


def test_it_connects_to_the_checked_address_with_the_host_name_in_the_host_header(
    httpserver_ipv4: HTTPServer, stub_dns: Callable[..., StubResolver]
) -> None:
    # A second lookup would go to the real resolver, which refuses names in these tests.
    resolver = stub_dns("127.0.0.1")
    httpserver_ipv4.expect_request("/hook").respond_with_data(b"pinned")

    result = post(f"http://hooks.example.com:{httpserver_ipv4.port}/hook")

    sent, _ = httpserver_ipv4.log[0]
    assert result.body == b"pinned"
    assert sent.headers["Host"] == f"hooks.example.com:{httpserver_ipv4.port}"
    assert resolver.calls == [("hooks.example.com", httpserver_ipv4.port)]


def test_it_resolves_again_on_every_call_and_blocks_a_rebound_name(
    keep_alive_server: RawServer, stub_dns: Callable[..., StubResolver]
) -> None:
    url = f"http://hooks.example.com:{keep_alive_server.port}/small"
    networks = http.parse_networks(["127.0.0.1/32"])
    resolver = stub_dns("127.0.0.1")
    assert post(url, allowed_networks=networks).body == b"ok"

    resolver.answers = ["127.0.0.2"]
    with pytest.raises(http.TransportError) as caught:
        post(url, allowed_networks=networks)

    assert caught.value.message == "blocked: address not public"
    assert len(resolver.calls) == 2
    assert keep_alive_server.connections == 1


@pytest.mark.one_client
def test_it_refuses_a_kept_alive_connection_the_policy_no_longer_allows(
    keep_alive_server: RawServer, stub_dns: Callable[..., StubResolver]
) -> None:
    url = f"http://hooks.example.com:{keep_alive_server.port}/small"
    stub_dns("127.0.0.1")
    assert post(url).body == b"ok"

    # The name now resolves to a public address, but the pooled connection still goes to
    # 127.0.0.1, which this call does not allow.
    stub_dns(PUBLIC_IP)
    with pytest.raises(http.TransportError) as caught:
        post(url, allowed_networks=[])

    assert caught.value.message == "blocked: address not public"
    assert keep_alive_server.connections == 1


@pytest.mark.one_client
def test_it_never_reuses_a_connection_checked_under_another_policy(
    keep_alive_server: RawServer, stub_dns: Callable[..., StubResolver]
) -> None:
    # The async client pools connections per address policy: a kept-alive connection is only
    # reused by requests whose policy checked the address it was opened to.
    runner = AsyncRunner()
    url = f"http://hooks.example.com:{keep_alive_server.port}/small"
    stub_dns("127.0.0.1")
    try:
        first = runner.post(url, b"", {}, allowed_networks=LOOPBACK)
        same = runner.post(url, b"", {}, allowed_networks=LOOPBACK)
        other = runner.post(url, b"", {}, allowed_networks=http.parse_networks(["127.0.0.1/32"]))
    finally:
        runner.close()

    assert [r.body for r in (first, same, other)] == [b"ok"] * 3
    assert keep_alive_server.connections == 2


@pytest.mark.one_client
def test_it_gives_a_hex_named_host_its_name_not_its_address(
    stub_dns: Callable[..., StubResolver], httpserver_ipv4: HTTPServer
) -> None:
    # Only numeric forms of an address are replaced by the checked address; a name made of
    # hex letters is a name (its Host header, SNI and certificate stay the name).
    resolver = stub_dns("127.0.0.1")
    httpserver_ipv4.expect_request("/hook").respond_with_data(b"named")
    runner = AsyncRunner()
    try:
        result = runner.post(
            f"http://deadbeef.cafe:{httpserver_ipv4.port}/hook", b"", {}, allowed_networks=LOOPBACK
        )
    finally:
        runner.close()

    sent, _ = httpserver_ipv4.log[0]
    assert result.body == b"named"
    assert sent.headers["Host"] == f"deadbeef.cafe:{httpserver_ipv4.port}"
    assert resolver.calls == [("deadbeef.cafe", httpserver_ipv4.port)]


def test_it_allows_exactly_the_allowed_networks(
    stub_dns: Callable[..., StubResolver], connect_trap: list[Any]
) -> None:
    networks = http.parse_networks(["10.0.0.5/32"])
    stub_dns("10.0.0.6")
    with pytest.raises(http.TransportError) as blocked:
        send("http://hooks.example.com/", b"", {}, allowed_networks=networks)
    assert connect_trap == []

    stub_dns("10.0.0.5")
    with pytest.raises(http.TransportError) as trapped:
        send("http://hooks.example.com/", b"", {}, allowed_networks=networks)

    assert blocked.value.message == "blocked: address not public"
    # Let through, to the very address that was checked (the trap refused the connect).
    assert trapped.value.message == "connection refused"
    assert connect_trap == [("10.0.0.5", 80)]


@pytest.fixture
def django_settings() -> Iterator[Callable[..., None]]:
    """Swap in fake Django settings; monkeypatch cannot, it would load the real ones."""
    settings = pytest.importorskip("django.conf").settings
    saved = settings._wrapped

    def use(**values: Any) -> None:
        settings._wrapped = SimpleNamespace(**values)

    yield use
    settings._wrapped = saved


def test_it_reads_allowed_networks_from_django_settings(
    django_settings: Callable[..., None], keep_alive_server: RawServer
) -> None:
    url = keep_alive_server.url("/small")

    django_settings(WEBHOOK_ALLOWED_NETWORKS=[])
    with pytest.raises(http.TransportError) as caught:
        send(url, b"", {})
    django_settings(WEBHOOK_ALLOWED_NETWORKS=["127.0.0.1"])
    result = send(url, b"", {})

    assert caught.value.message == "blocked: address not public"
    assert result.body == b"ok"


def test_it_reports_a_host_that_does_not_resolve(stub_dns: Callable[..., StubResolver]) -> None:
    stub_dns(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    with pytest.raises(http.TransportError) as caught:
        send("https://nowhere.invalid/hook", b"", {}, allowed_networks=[])

    assert (caught.value.message, caught.value.permanent) == (
        "could not resolve host nowhere.invalid",
        False,
    )


# --- check_url and mask_url ----------------------------------------------------------------


@pytest.mark.one_client
@pytest.mark.parametrize(
    ("url", "require_https", "message"),
    [
        ("", False, "Enter a valid URL."),
        ("not a url", False, "Enter a valid URL."),
        ("hooks.example.com/path", False, "Enter a valid URL."),
        ("https://", False, "Enter a valid URL."),
        ("https://hooks.example.com:99999/", False, "Enter a valid URL."),
        ("https://hooks example.com/", False, "Enter a valid URL."),
        ("ftp://hooks.example.com/", False, "Only http:// and https:// URLs are allowed."),
        ("javascript://alert(1)", False, "Only http:// and https:// URLs are allowed."),
        ("http://hooks.example.com/", True, "The URL must use https://."),
        (
            "https://hooks.example.com/" + "a" * 2048,
            False,
            "The URL is too long (at most 2048 characters).",
        ),
    ],
)
def test_it_explains_why_a_url_is_refused(url: str, require_https: bool, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        http.check_url(url, require_https=require_https, resolve=False)

    assert str(caught.value) == message


@pytest.mark.one_client
def test_it_accepts_a_public_url(stub_dns: Callable[..., StubResolver]) -> None:
    resolver = stub_dns(PUBLIC_IP)

    http.check_url("https://hooks.example.com/pos", require_https=True, allowed_networks=[])

    assert resolver.calls == [("hooks.example.com", 443)]


@pytest.mark.one_client
def test_it_refuses_a_url_whose_host_does_not_resolve(
    stub_dns: Callable[..., StubResolver],
) -> None:
    stub_dns(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    with pytest.raises(ValueError, match=r"^The host could not be resolved\.$"):
        http.check_url("https://nowhere.invalid/", require_https=True, allowed_networks=[])


@pytest.mark.one_client
def test_it_refuses_a_url_pointing_at_a_private_address(
    stub_dns: Callable[..., StubResolver],
) -> None:
    networks = http.parse_networks(["10.0.0.5/32"])
    stub_dns("10.0.0.5")
    http.check_url("http://hooks.example.com/", require_https=False, allowed_networks=networks)

    stub_dns("10.0.0.6")
    with pytest.raises(ValueError) as caught:
        http.check_url("http://hooks.example.com/", require_https=False, allowed_networks=networks)

    assert str(caught.value) == "This address is not allowed: it is not a public address."


@pytest.mark.one_client
def test_it_checks_a_literal_address_even_without_resolving() -> None:
    with pytest.raises(ValueError, match="not a public address"):
        http.check_url("http://169.254.169.254/", require_https=False, resolve=False)


@pytest.mark.one_client
@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://user:secret@host.example/path", "https://user:****@host.example/path"),
        ("https://u:p%40ss@host.example:8443/x?y=1", "https://u:****@host.example:8443/x?y=1"),
        ("https://user@host.example/path", "https://user@host.example/path"),
        ("https://host.example/a@b?c=d:e@f", "https://host.example/a@b?c=d:e@f"),
        ("http://host.example/", "http://host.example/"),
    ],
)
def test_it_masks_only_the_password(url: str, masked: str) -> None:
    assert http.mask_url(url) == masked


@pytest.mark.one_client
def test_it_parses_networks_and_rejects_garbage() -> None:
    networks = http.parse_networks(["10.0.0.0/8", " ::1 ", "", "192.168.1.7/24"])

    assert [str(n) for n in networks] == ["10.0.0.0/8", "::1/128", "192.168.1.0/24"]
    with pytest.raises(ValueError, match="not-a-network"):
        http.parse_networks(["not-a-network"])
