"""What RQ workers run: the delivery pump and the sweep.

One RQ job per HTTP request would cap a worker at RQ's per-job overhead (PERF_NOTES: about
220 no-op jobs a second). Instead `kick()` enqueues at most one `pump` job at a time, and a
pump keeps a pool of requests in flight, refilling it from the database as requests finish,
until nothing is due. The database owns the state: `sweep()` runs every second in each
worker, gives back the claims of dead workers and kicks a pump whenever work is due, so a
lost job, a flushed Redis or a crash between commit and enqueue delays work but loses none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import lru_cache
from types import FrameType

import django_rq
from django.conf import settings
from django.db import close_old_connections
from redis.exceptions import RedisError
from rq import Queue

from deliveries.models import AttemptResult, Delivery

log = logging.getLogger(__name__)

QUEUE = "default"
PUMP_QUEUED_KEY = "webhooks:pump-queued"
PUMP_QUEUED_TTL = 30  # seconds; a lost job only delays work until the sweep notices
PUMP_MAX_SECONDS = 60  # a pump hands over to a fresh job now and then, so workers recycle
FLUSH_EVERY = 0.05  # seconds between bulk writes of finished attempts
FLUSH_BATCH = 200


@lru_cache(maxsize=1)
def queue() -> Queue:
    """The delivery queue, made once per process: a new Redis connection per enqueue cost more
    than the enqueue itself (redis-py pools by connection object, and fork-safely)."""
    return django_rq.get_queue(QUEUE)


def kick(*, force: bool = False) -> bool:
    """Make sure a pump job is queued; called after every commit that creates due work.

    Args:
        force: enqueue even if the marker says one is queued (the sweep, when work waits).

    Returns:
        True when a job was enqueued.
    """
    try:
        q = queue()
        if not q.connection.set(PUMP_QUEUED_KEY, "1", nx=True, ex=PUMP_QUEUED_TTL):
            if not force:
                return False
            q.connection.set(PUMP_QUEUED_KEY, "1", ex=PUMP_QUEUED_TTL)
        q.enqueue(
            pump,
            job_timeout=PUMP_MAX_SECONDS + 120,
            result_ttl=0,
            failure_ttl=24 * 3600,
        )
    except RedisError as exc:
        # The deliveries are committed; the sweep enqueues them once Redis is back.
        log.warning("could not enqueue delivery work (%s); the sweep will retry", exc)
        return False
    return True


class _Stop:
    """Set by SIGTERM so a pump stops claiming and finishes what is in flight."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: object = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if callable(self._previous):
            self._previous(signum, frame)


def pump(max_seconds: float = PUMP_MAX_SECONDS) -> int:
    """Send due deliveries until none is left, keeping the thread pool full.

    Args:
        max_seconds: stop claiming after this long and hand over to a fresh job.

    Returns:
        How many attempts were made.
    """
    with contextlib.suppress(RedisError):
        queue().connection.delete(PUMP_QUEUED_KEY)
    return Pump().run(max_seconds)


class Pump:
    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or settings.WEBHOOK_WORKER_THREADS
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.in_flight: dict[Future[AttemptResult], Delivery] = {}
        self.busy: Counter[int] = Counter()
        self.caps: dict[int, int] = {}
        self.finished: list[AttemptResult] = []
        self.last_flush = time.monotonic()
        self.sent = 0

    def run(self, max_seconds: float) -> int:
        stop = _Stop()
        stop.install()
        deadline = time.monotonic() + max_seconds
        try:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="deliver") as pool:
                while True:
                    claiming = not stop.requested and time.monotonic() < deadline
                    claimed = self.refill(pool) if claiming else 0
                    if not self.in_flight:
                        if claimed == 0:
                            break
                        continue
                    self.collect(timeout=FLUSH_EVERY)
                    if self.should_flush():
                        self.flush()
        finally:
            self.flush()
            stop.uninstall()
        if time.monotonic() >= deadline or stop.requested:
            kick(force=True)  # there may be more: let another job (or worker) carry on
        return self.sent

    def refill(self, pool: ThreadPoolExecutor) -> int:
        free = self.threads - len(self.in_flight)
        # Claiming one row at a time would cost a query per request: wait for a few slots.
        if free < max(1, self.threads // 8) and self.in_flight:
            return 0
        full = {pk for pk, n in self.busy.items() if n >= self.cap_of(pk)}
        claimed = Delivery.objects.claim(self.token, free, busy=dict(self.busy), full=full)
        for delivery in claimed:
            self.in_flight[pool.submit(delivery.attempt)] = delivery
            if delivery.endpoint_id:
                self.busy[delivery.endpoint_id] += 1
                self.caps[delivery.endpoint_id] = delivery.endpoint.max_in_flight
        return len(claimed)

    def cap_of(self, endpoint_id: int) -> int:
        return self.caps.get(endpoint_id, 1)

    def collect(self, timeout: float) -> None:
        done, _ = wait(self.in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            delivery = self.in_flight.pop(future)
            if delivery.endpoint_id:
                self.busy[delivery.endpoint_id] -= 1
                if self.busy[delivery.endpoint_id] <= 0:
                    del self.busy[delivery.endpoint_id]
            self.finished.append(_result_of(future, delivery))
            self.sent += 1

    def should_flush(self) -> bool:
        return len(self.finished) >= FLUSH_BATCH or (
            self.finished and time.monotonic() - self.last_flush >= FLUSH_EVERY
        )

    def flush(self) -> None:
        if self.finished:
            Delivery.objects.record(self.token, self.finished)
            self.finished = []
        self.last_flush = time.monotonic()


def _result_of(future: Future[AttemptResult], delivery: Delivery) -> AttemptResult:
    try:
        return future.result()
    except Exception as exc:  # a bug must not leave the delivery claimed forever
        log.exception("delivery %s crashed", delivery.public_id)
        return AttemptResult(
            delivery=delivery, request_body=b"", request_headers={}, error=f"internal error: {exc}"
        )


def sweep() -> int:
    """Give back expired claims, and kick a pump if anything is due.

    Returns:
        How many expired claims were given back.
    """
    released = Delivery.objects.release_expired()
    if released:
        log.warning("released %d deliveries whose worker stopped mid-batch", released)
    if Delivery.objects.due().exists():
        try:
            queued = queue().count
        except RedisError:
            return released
        kick(force=queued == 0)
    return released


class Sweeper(threading.Thread):
    """Runs `sweep()` every WEBHOOK_SWEEP_SECONDS beside a worker's main loop."""

    def __init__(self) -> None:
        super().__init__(name="sweeper", daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(settings.WEBHOOK_SWEEP_SECONDS):
            try:
                sweep()
            except Exception:
                log.exception("sweep failed; trying again")
            finally:
                close_old_connections()
