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
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from queue import Empty, SimpleQueue
from types import FrameType

import django_rq
from django.conf import settings
from django.db import close_old_connections, connection
from redis.exceptions import RedisError
from rq import Queue

from deliveries.models import AttemptResult, ClaimCache, Delivery

log = logging.getLogger(__name__)

QUEUE = "default"
PUMP_QUEUED_KEY = "webhooks:pump-queued"
PUMP_QUEUED_TTL = 30  # seconds; a lost job only delays work until the sweep notices
PUMP_MAX_SECONDS = 60  # a pump hands over to a fresh job now and then, so workers recycle
FLUSH_EVERY = 0.05  # seconds between bulk writes of finished attempts
FLUSH_BATCH = 200
CLAIM_RETRY = 0.1  # seconds between claims while the last one found nothing
CLAIM_TOPUP = 0.02  # seconds between claims that found less than asked: let more come due
CLAIM_CHUNK = 4  # a claim fetches up to this many pool-fulls, so claims stay few
PREFETCH = 4  # claimed-but-waiting deliveries per endpoint, as a multiple of its in-flight cap


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


@lru_cache(maxsize=4)
def sender_pool(threads: int) -> ThreadPoolExecutor:
    """The worker process's sender threads, kept across pump jobs (no thread start-up per job)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="deliver")


class Pump:
    """A pool of sender threads fed continuously from the database.

    Claimed deliveries wait in a small local queue per endpoint; the main thread hands them to
    free threads while keeping each endpoint under its in-flight cap, claims a new chunk when
    the queue runs low, and writes finished attempts in bulk. Claiming and recording in chunks
    keeps the database work per delivery small, and no batch ever waits for its slowest member.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or settings.WEBHOOK_WORKER_THREADS
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.waiting: dict[int | str, deque[Delivery]] = {}
        self.queued = 0
        self.in_flight = 0
        self.busy: Counter[int | str] = Counter()  # in flight, per endpoint
        self.caps: dict[int | str, int] = {}
        self.done: SimpleQueue[AttemptResult] = SimpleQueue()
        self.finished: list[AttemptResult] = []
        self.last_flush = time.monotonic()
        self.sent = 0
        self.peak_in_flight = 0
        self.cache = ClaimCache()

    def run(self, max_seconds: float) -> int:
        stop = _Stop()
        stop.install()
        deadline = time.monotonic() + max_seconds
        try:
            self._loop(sender_pool(self.threads), stop, deadline)
        finally:
            self.release_waiting()
            self.flush()
            stop.uninstall()
        if time.monotonic() >= deadline or stop.requested:
            kick(force=True)  # there may be more: let another job (or worker) carry on
        return self.sent

    def _loop(self, pool: ThreadPoolExecutor, stop: _Stop, deadline: float) -> None:
        next_claim = 0.0  # after a claim that found nothing, look again at this time
        exhausted = False
        while True:
            now = time.monotonic()
            claiming = not stop.requested and now < deadline
            if (
                claiming
                and self.queued < self.threads
                and (now >= next_claim or not self.in_flight)
            ):
                got, wanted = self.claim()
                exhausted = got == 0
                # New work for a busy pump (a kick, a retry coming due) waits this long at most.
                # After a partial claim everything due is ours: claiming again at once would
                # take the database's write lock for the odd new row, tens of times a second.
                if exhausted:
                    next_claim = now + CLAIM_RETRY
                elif got < wanted:
                    next_claim = now + CLAIM_TOPUP
                else:
                    next_claim = 0.0
            if stop.requested:
                self.release_waiting()
            self.dispatch(pool)
            if not self.in_flight:
                if self.queued == 0 and (exhausted or not claiming):
                    return
                continue
            self.collect(timeout=min(FLUSH_EVERY, CLAIM_RETRY))
            waited = time.monotonic() - self.last_flush
            if self.finished and (len(self.finished) >= FLUSH_BATCH or waited >= FLUSH_EVERY):
                self.flush()

    def claim(self) -> tuple[int, int]:
        """Fetch up to CLAIM_CHUNK pool-fulls of due deliveries, respecting per-endpoint caps.

        Returns:
            How many were claimed, and how many were asked for.
        """
        busy = Counter(self.busy)
        for key, waiting in self.waiting.items():
            busy[key] += len(waiting)
        int_busy = {k: n for k, n in busy.items() if isinstance(k, int)}
        full = [k for k, n in int_busy.items() if n >= self.caps.get(k, 1) * PREFETCH]
        wanted = CLAIM_CHUNK * self.threads - self.queued
        claimed = Delivery.objects.claim(
            self.token,
            wanted,
            busy=int_busy,
            full=full,
            prefetch=PREFETCH,
            cache=self.cache,
        )
        for delivery in claimed:
            key = delivery.endpoint_id or f"url-{delivery.pk}"
            self.caps[key] = delivery.endpoint.max_in_flight if delivery.endpoint_id else 1
            self.waiting.setdefault(key, deque()).append(delivery)
        self.queued += len(claimed)
        return len(claimed), wanted

    def dispatch(self, pool: ThreadPoolExecutor) -> None:
        """Start as many waiting deliveries as threads are free, round-robin over endpoints."""
        while self.queued and self.in_flight < self.threads:
            started = False
            for key in list(self.waiting):
                if self.in_flight >= self.threads:
                    break
                if self.busy[key] >= self.caps[key]:
                    continue
                waiting = self.waiting[key]
                delivery = waiting.popleft()
                if not waiting:
                    del self.waiting[key]
                self.queued -= 1
                self.in_flight += 1
                self.busy[key] += 1
                pool.submit(self._attempt, delivery)
                started = True
            if not started:
                break
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _attempt(self, delivery: Delivery) -> None:
        try:
            result = delivery.attempt()
        except Exception as exc:  # a bug must not leave the delivery claimed forever
            log.exception("delivery %s crashed", delivery.public_id)
            result = AttemptResult(
                delivery=delivery,
                request_body=b"",
                request_headers={},
                error=f"internal error: {exc}",
            )
        self.done.put(result)

    def collect(self, timeout: float) -> None:
        try:
            results = [self.done.get(timeout=timeout)]
        except Empty:
            return
        with contextlib.suppress(Empty):
            while True:
                results.append(self.done.get_nowait())
        for result in results:
            delivery = result.delivery
            key = delivery.endpoint_id or f"url-{delivery.pk}"
            self.in_flight -= 1
            self.busy[key] -= 1
            if self.busy[key] <= 0:
                del self.busy[key]
            self.finished.append(result)
        self.sent += len(results)

    def release_waiting(self) -> None:
        """Give back claimed deliveries that were never sent (stopping, or handing over)."""
        ids = [d.pk for waiting in self.waiting.values() for d in waiting]
        self.waiting.clear()
        self.queued = 0
        if ids:
            Delivery.objects.release(self.token, ids)

    def flush(self) -> None:
        if self.finished:
            Delivery.objects.record(self.token, self.finished)
            self.finished = []
        self.last_flush = time.monotonic()


def sweep() -> int:
    """Give back expired claims, and kick a pump if anything is due.

    Returns:
        How many expired claims were given back.
    """
    checkpoint = getattr(connection, "checkpoint", None)
    if checkpoint is not None:
        checkpoint()  # SQLite: copy the WAL back here rather than inside some API commit
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

    def __init__(self, on_sweep: Callable[[], None] | None = None) -> None:
        super().__init__(name="sweeper", daemon=True)
        self.stopped = threading.Event()
        self.on_sweep = on_sweep  # the worker's own upkeep, run after each sweep

    def run(self) -> None:
        while not self.stopped.wait(settings.WEBHOOK_SWEEP_SECONDS):
            try:
                sweep()
                if self.on_sweep is not None:
                    self.on_sweep()
            except Exception:
                log.exception("sweep failed; trying again")
            finally:
                close_old_connections()
