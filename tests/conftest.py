"""Shared fixtures: merchants and their users, a real Redis, real workers, real receivers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import django_rq
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from playwright.sync_api import sync_playwright

from accounts.models import Merchant, OperatorKey, User
from catalogue import seed as catalogue
from catalogue.models import Category, EventType
from deliveries import jobs
from deliveries.models import _event_types as event_type_cache
from deliveries.worker import DeliveryWorker
from endpoints.models import Endpoint
from webhooks_project import embedded_redis

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="session", autouse=True)
def _redis_server() -> Iterator[None]:
    """The suite's embedded Redis (the settings only name its socket; this starts it, and
    stops it when the session ends if it started it)."""
    from django.conf import settings

    ours = embedded_redis.url_for(settings.TEST_REDIS_DIR) == settings.REDIS_URL
    started = ours and not embedded_redis.is_running(settings.TEST_REDIS_DIR)
    if ours:
        embedded_redis.ensure_running(settings.TEST_REDIS_DIR)
    yield
    if started:
        embedded_redis.stop(settings.TEST_REDIS_DIR)


# --- the seeded catalogue ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def _catalogue(request: pytest.FixtureRequest) -> None:
    """Transactional tests flush tables, the migration-seeded catalogue included: restore it."""
    if not {"db", "transactional_db"} & set(request.fixturenames):
        return
    request.getfixturevalue("db")
    if not EventType.objects.exists():
        catalogue.install(Category, EventType)
        event_type_cache.clear()  # the rows are new: forget the ids emit() cached


# --- merchants and users ---------------------------------------------------------------


@pytest.fixture
def merchant(db: None) -> Merchant:
    return Merchant.objects.create(name="Owner Coffee")


@pytest.fixture
def owner(merchant: Merchant) -> User:
    return User.objects.create_user(
        "owner", email="owner@example.com", password=PASSWORD, merchant=merchant
    )


@pytest.fixture
def teammate(merchant: Merchant) -> User:
    return User.objects.create_user(
        "teammate", email="teammate@example.com", password=PASSWORD, merchant=merchant
    )


@pytest.fixture
def outsider_merchant(db: None) -> Merchant:
    return Merchant.objects.create(name="Outsider Bakery")


@pytest.fixture
def outsider(outsider_merchant: Merchant) -> User:
    return User.objects.create_user(
        "outsider", email="outsider@example.com", password=PASSWORD, merchant=outsider_merchant
    )


@pytest.fixture
def staff(db: None) -> User:
    return User.objects.create_superuser("staff", "staff@example.com", PASSWORD)


@pytest.fixture
def staff_client(staff: User) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def api(merchant: Merchant) -> Client:
    """A REST API client with a fresh bearer key of `merchant`."""
    from accounts.models import ApiKey

    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})


# --- the platform operator -------------------------------------------------------------


@pytest.fixture
def operator_key(db: None) -> str:
    """A raw operator key (the POS platform's own credential)."""
    return OperatorKey.issue("Back office")[1]


@pytest.fixture
def operator(operator_key: str) -> Client:
    """An API client with the operator key and no Merchant-Id."""
    return Client(headers={"authorization": f"Bearer {operator_key}"})


# --- Redis and workers -----------------------------------------------------------------


def database_url() -> str:
    """The test database as a DATABASE_URL, for worker processes started by tests."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host = quote(db["HOST"] or "", safe="")
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{host}:{db['PORT']}/{db['NAME']}"
    # Workers started by tests go through PgBouncer the same way as the test itself.
    return url + "?pgbouncer=1" if settings.DATABASE_PGBOUNCER else url


@pytest.fixture
def redis_conn() -> Iterator[Any]:
    """The test Redis, emptied before and after the test."""
    conn = django_rq.get_connection("default")
    conn.flushdb()
    yield conn
    conn.flushdb()


@pytest.fixture
def work(redis_conn: Any) -> Callable[..., None]:
    """Run a real RQ worker (burst mode, in this process) plus the sweep until done.

    Call `work()` to run what is queued now, or `work(until=lambda: ..., timeout=10)` to
    keep sweeping and working until a condition holds (retries due later).
    """

    def run(until: Callable[[], bool] | None = None, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            jobs.sweep()
            worker = DeliveryWorker(
                [django_rq.get_queue("default")], connection=redis_conn, name=None
            )
            worker.work(burst=True, logging_level="WARNING")
            if until is None or until():
                return
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached before the timeout")
            time.sleep(0.1)

    return run


# --- receivers ---------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class _ManyConnectionsServer(ThreadingHTTPServer):
    # A worker opens hundreds of connections at once; the default listen backlog of 5 made
    # the kernel drop connection attempts, which the client retried a second or more later.
    request_queue_size = 1024


class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers as scripted.

    `by_request` answers by what was sent, then `routes` by path; otherwise `answers` is
    consumed one per request, and when it runs out, `default` answers.
    """

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.answers: list[Answer] = []
        self.default = Answer()
        self.routes: dict[str, Answer] = {}
        # Answers by what was sent (its body, say); None falls through to the rules above.
        self.by_request: Callable[[Received], Answer | None] | None = None
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0  # the most requests this receiver held at once
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(
                        Received(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.time(),
                        )
                    )
                    answer = (
                        (receiver.by_request and receiver.by_request(receiver.requests[-1]))
                        or receiver.routes.get(self.path)
                        or (receiver.answers.pop(0) if receiver.answers else receiver.default)
                    )
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                try:
                    if answer.delay:
                        time.sleep(answer.delay)
                finally:
                    with receiver.lock:
                        receiver.in_flight -= 1
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _ManyConnectionsServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


# --- endpoints -------------------------------------------------------------------------


@pytest.fixture
def make_endpoint(merchant: Merchant) -> Callable[..., Endpoint]:
    def make(url: str, types: tuple[str, ...] = ("receipts.update",), **fields: Any) -> Endpoint:
        owner_merchant = fields.pop("merchant", merchant)
        endpoint = Endpoint.objects.create(merchant=owner_merchant, url=url, **fields)
        endpoint.event_types.set(EventType.objects.filter(name__in=types))
        return endpoint

    return make


def webhook_form_data(**overrides: Any) -> dict[str, Any]:
    """The fields of a valid add/edit webhook form, with overrides (needs the database)."""
    fields: dict[str, Any] = {
        "url": "http://127.0.0.1:9/hook",
        "description": "Back office",
        "category": Category.objects.get(slug="sales").pk,
        "event_types": [EventType.objects.get(name="receipts.update").pk],
        "log_mode": "full",
        "payload_style": "full",
        "retry_policy": "exponential",
        "fixed_retries": 1,
        "fixed_cooldown_seconds": 7,
        "timeout_seconds": 30,
    }
    fields.update(overrides)
    return fields


@pytest.fixture
def webhook_form(db: None) -> Callable[..., dict[str, Any]]:
    """`webhook_form_data`, for tests that take it as a fixture."""
    return webhook_form_data


@pytest.fixture
def owner_client(owner: User) -> Client:
    """A browser-less client logged in as the merchant's owner."""
    client = Client()
    client.force_login(owner)
    return client


# --- a real browser (Playwright driving Debian's Chromium; its own download fails here) --

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def allow_orm_beside_the_event_loop() -> Iterator[None]:
    """Playwright's sync API runs an event loop in this thread, and the test's own ORM calls
    (fixtures, emit, checks) run beside it. Django refuses that unless told it is safe, which
    it is here; only for this module, so subprocesses of other tests do not inherit it.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="module")
def browser(allow_orm_beside_the_event_loop: None) -> Iterator[Any]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


# The two screens every page is looked at on: an office laptop and a phone.
VIEWPORTS = {"desk": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> dict[str, int]:
    return VIEWPORTS[request.param]


@pytest.fixture
def sized_page(page: Any, viewport: dict[str, int]) -> Any:
    """The browser page at the desk's or the phone's size (the test runs at both)."""
    page.set_viewport_size(viewport)
    return page
