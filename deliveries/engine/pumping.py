"""The pump: a worker's sending core, fed continuously from the database.

A pump job claims exactly as many due deliveries as the process has free send slots
(WEBHOOK_MAX_IN_FLIGHT) and starts them at once, so nothing it holds waits (a waiting claim
could outlive its lease and be sent again by another worker). The sends run on one event loop
on a thread of its own (`lib.http.aio`): a send that waits on a hanging or slow receiver costs
a socket, not a thread, so one process keeps a thousand requests in flight. Each finished send
goes to a recorder thread that writes finished attempts in bulk, so claiming never waits for
recording; until a finished attempt is recorded its row still says `delivering`, so claims
subtract this process's own unrecorded ones from an endpoint's in-flight count.

The event loop, what it has in flight and the recorder belong to the worker process
(`Senders`), not to one pump job. A pump job hands over to a fresh one every
WEBHOOK_PUMP_SECONDS (so e-mail jobs get their turn on the worker); it returns at once, and the
next job counts the sends still in flight as busy slots.

When the database goes away (a PostgreSQL restart or failover, a PgBouncer restart), the
recorder keeps the outcomes it could not write and writes them once the database answers
again: they are never dropped, so those deliveries are not sent a second time.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import os
import resource
import signal
import threading
import time
import uuid
from queue import Empty, SimpleQueue
from types import FrameType
from typing import Any

from django.conf import settings
from django.db import connection

from deliveries.engine.cache import ClaimCache
from deliveries.engine.claiming import Discovery, Load, claim
from deliveries.engine.clock import db_now
from deliveries.engine.finding import MAX_FRESH
from deliveries.engine.queueing import kick, take_fresh
from deliveries.engine.recording import DATABASE_AWAY, forget_connection, record
from deliveries.engine.sending import AttemptResult, attempt_async, unsent
from deliveries.models import Delivery
from lib.http.aio import AsyncClient

log = logging.getLogger(__name__)

RECORD_EVERY = 0.05  # seconds the recorder lets results gather into one bulk write (fewer,
# larger write transactions: on SQLite each holds the write lock the API waits for)
CLAIM_RETRY = 0.1  # seconds between claims while the last one found nothing
CLAIM_TOPUP = 0.04  # seconds between claims for a few free slots: claims stay few
MIN_CLAIM_FRACTION = 4  # claim at once when a quarter of the slots are free
# The most one claim takes: a thousand free slots are filled by several claims in a row, so a
# merchant whose event comes meanwhile waits for one claim's work, not for a thousand sends'.
# 100, not 200: draining a crowd of 10,000 on two busy cores, a claim of 200 took long enough
# that a newcomer's event waited p50 330 ms to be claimed (100: 60 ms), at the same drain rate.
MAX_CLAIM = 100
RECORD_RETRY_MAX = 5.0  # seconds between tries to write outcomes while the database is away
DRAIN_RECORD_SECONDS = 60.0  # how long an exiting worker keeps trying to write its outcomes
# How long outcomes are kept for a database that keeps refusing them. Past this their leases
# have run out anyway (they are due again and will be sent again: at least once), and an
# error that never passes (SQLite answers "database is locked" and a broken statement alike)
# must not pile up results for ever.
KEEP_RECORD_SECONDS = 120.0
SLOW_MEMORY = 60.0  # seconds an endpoint stays in the slow lane after a slow or missing answer


class StopFlag:
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


class Recorder(threading.Thread):
    """Writes finished attempts in bulk on its own thread (and its own database connection).

    Outcomes the database could not take (it went away) are kept and written with the next
    batch, once it answers again.
    """

    def __init__(self, senders: Senders) -> None:
        super().__init__(name="recorder", daemon=True)
        self.senders = senders
        self.incoming: SimpleQueue[AttemptResult | None] = SimpleQueue()
        self.closing = threading.Event()  # set by close(): stop gathering, write now

    def run(self) -> None:
        kept: list[AttemptResult] = []  # not written yet: the database was away
        kept_since = 0.0
        pause = RECORD_EVERY
        closing = False
        closed_at = 0.0
        try:
            while True:
                batch = self._gather(kept, pause if kept else None)
                if batch is None:
                    closing, closed_at = True, closed_at or time.monotonic()
                    batch = []
                kept_since = kept_since if kept else time.monotonic()
                kept += batch
                if kept:
                    if record(self.senders.token, kept):
                        self.senders.recorded(kept)
                        kept, pause = [], RECORD_EVERY
                    else:
                        pause = min(max(pause * 2, 0.25), RECORD_RETRY_MAX)
                now = time.monotonic()
                if kept and (
                    now - kept_since > KEEP_RECORD_SECONDS
                    or (closing and now - closed_at > DRAIN_RECORD_SECONDS)
                ):
                    log.error(
                        "gave up writing %d outcomes: the database kept refusing them; their "
                        "leases run out and they will be sent again",
                        len(kept),
                    )
                    self.senders.recorded(kept)
                    kept = []
                if closing and not kept:
                    return
        finally:
            connection.close()

    def _gather(self, kept: list[AttemptResult], wait: float | None) -> list[AttemptResult] | None:
        """The next results to write: waits for one (or `wait` seconds while some are kept),
        then lets a few more finish. None once close() was called and nothing is left."""
        try:
            first = self.incoming.get(timeout=wait) if wait is not None else self.incoming.get()
        except Empty:
            return []
        if first is None:
            return None
        # Let a few more finish: one write for all of them. A pump that is done does not wait
        # (the worker's next job starts only when it returns).
        self.closing.wait(RECORD_EVERY)
        batch = [first]
        with contextlib.suppress(Empty):
            while True:
                more = self.incoming.get_nowait()
                if more is None:
                    self.incoming.put(None)  # seen again by the next _gather: close after this
                    break
                batch.append(more)
        return batch

    def close(self) -> None:
        """Write what is left and stop."""
        self.closing.set()
        self.incoming.put(None)
        self.join()


class Senders:
    """One worker process's sending core: an event loop on its own thread, what it has in
    flight, and its recorder.

    Shared by the process's pump jobs, one after another (RQ runs one job at a time).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        _allow_open_files(capacity)
        self.loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self.client = AsyncClient()
        threading.Thread(target=self.loop.run_forever, name="send-loop", daemon=True).start()
        # The claim token of every delivery this process claims: a result recorded after the
        # job that claimed it has handed over is still recorded under it.
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # a send finished, or a batch was recorded
        self.load = Load(capacity)
        # For the slow lane: when each send in flight started (by delivery), and until when
        # each endpoint that answered slowly or not at all stays slow.
        self.started: dict[int, tuple[int | None, float]] = {}
        self.slow_until: dict[int, float] = {}
        # Endpoints with a failure recorded since the pump last looked: their breaker or due
        # time may have moved, so a reused scan forgets them.
        self.failed: set[int] = set()
        self.in_flight = 0
        self.sent = 0
        self.finished = 0  # sends finished, sent or not
        self.recorder: Recorder | None = None

    def free(self) -> int:
        with self.lock:
            return self.capacity - self.in_flight

    def close_connections(self, timeout: float = 5.0) -> None:
        """Close the kept-alive connections (a process about to exit); sending may go on."""
        if self.loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(timeout)

    def take_failed(self) -> set[int]:
        """Endpoints with a failed send since the last call (their breaker may have moved)."""
        with self.lock:
            failed, self.failed = self.failed, set()
            return failed

    def snapshot(self) -> Load:
        """What this worker has in flight, for one claim; the slow lane as of now."""
        now = time.monotonic()
        slow_after = now - settings.WEBHOOK_SLOW_SECONDS
        with self.lock:
            for endpoint_id in [e for e, until in self.slow_until.items() if until <= now]:
                del self.slow_until[endpoint_id]
            slow = set(self.slow_until)
            slow.update(e for e, at in self.started.values() if e is not None and at < slow_after)
            load = self.load.copy()
            load.slow = slow
            load.slow_in_flight = sum(1 for e, _ in self.started.values() if e in slow)
            return load

    def start(self, deliveries: list[Delivery]) -> None:
        """Start sending each claimed delivery on the event loop, now."""
        claimed_at = time.monotonic()
        with self.lock:
            if self.recorder is None:
                self.recorder = Recorder(self)
                self.recorder.start()
            for delivery in deliveries:
                self.in_flight += 1
                self.started[delivery.pk] = (delivery.endpoint_id, claimed_at)
                if delivery.endpoint_id is not None:
                    self.load.by_endpoint[delivery.endpoint_id] += 1
                self.load.by_merchant[delivery.merchant_id] += 1
                if delivery.attempts > 1:
                    self.load.retries += 1
        self.loop.call_soon_threadsafe(self._spawn, deliveries, claimed_at)

    def _spawn(self, deliveries: list[Delivery], claimed_at: float) -> None:
        for delivery in deliveries:
            task = self.loop.create_task(self._send(delivery, claimed_at))
            self._tasks.add(task)  # the loop keeps only weak references to its tasks
            task.add_done_callback(self._tasks.discard)

    async def _send(self, delivery: Delivery, claimed_at: float) -> None:
        result: AttemptResult | None = None
        try:
            # A claim older than this when its send starts is not sent: its lease may be gone.
            if time.monotonic() - claimed_at > settings.WEBHOOK_LEASE_MARGIN_SECONDS / 2:
                result = unsent(delivery, "claim too old to send")
            else:
                delay = getattr(delivery, "send_at", 0.0) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # its moment under its endpoint's rate limit
                result = await attempt_async(delivery, self.client)  # never raises
        finally:
            self._finished(result or unsent(delivery, "the send failed"))

    def _finished(self, result: AttemptResult) -> None:
        delivery = result.delivery
        with self.lock:
            self.in_flight -= 1
            self.started.pop(delivery.pk, None)
            self._note_speed(result)
            self.load.unrecorded.add(delivery.pk)
            if delivery.endpoint_id is not None and not result.ok:
                self.load.held[delivery.endpoint_id] += 1
            self.load.by_merchant[delivery.merchant_id] -= 1
            if self.load.by_merchant[delivery.merchant_id] <= 0:
                del self.load.by_merchant[delivery.merchant_id]
            if delivery.endpoint_id is not None:
                self.load.by_endpoint[delivery.endpoint_id] -= 1
                if self.load.by_endpoint[delivery.endpoint_id] <= 0:
                    del self.load.by_endpoint[delivery.endpoint_id]
            if delivery.attempts > 1:
                self.load.retries -= 1
            self.sent += result.sent
            self.finished += 1
            assert self.recorder is not None  # closed only with nothing in flight
            self.recorder.incoming.put(result)
            self.changed.notify_all()

    def _note_speed(self, result: AttemptResult) -> None:
        """A slow answer, or none, puts an endpoint in the slow lane; a quick one takes it out."""
        endpoint_id = result.delivery.endpoint_id
        if endpoint_id is None or not result.sent:
            return
        silent = not result.answered and not result.permanent
        if silent or result.duration_ms > settings.WEBHOOK_SLOW_SECONDS * 1000:
            self.slow_until[endpoint_id] = time.monotonic() + SLOW_MEMORY
        elif result.answered:
            self.slow_until.pop(endpoint_id, None)

    def recorded(self, batch: list[AttemptResult]) -> None:
        """What the recorder wrote is no longer counted as this process's unrecorded work."""
        with self.lock:
            for result in batch:
                delivery = result.delivery
                self.load.unrecorded.discard(delivery.pk)
                if delivery.endpoint_id is not None and not result.ok:
                    self.failed.add(delivery.endpoint_id)
                    self.load.held[delivery.endpoint_id] -= 1
                    if self.load.held[delivery.endpoint_id] <= 0:
                        del self.load.held[delivery.endpoint_id]
            self.changed.notify_all()

    def unrecorded(self) -> int:
        """Finished sends whose outcome is not written yet."""
        with self.lock:
            return len(self.load.unrecorded)

    def poke(self) -> None:
        """Wake a pump waiting in `wait` (new work was emitted)."""
        with self.lock:
            self.changed.notify_all()

    def wait(self, timeout: float) -> None:
        """Until a send finishes, a batch is recorded or new work is told, at most `timeout`
        seconds."""
        with self.lock:
            self.changed.wait(timeout)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait for every send in flight, write every result, and stop the recorder.

        Returns:
            False when sends were still in flight after `timeout` seconds (the recorder then
            keeps running and records them as they finish).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while self.in_flight:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.changed.wait(left)
            recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.close()  # nothing can be added now: nothing is in flight
        return True


_senders: dict[int, Senders] = {}
_senders_lock = threading.Lock()


def senders(capacity: int) -> Senders:
    """The worker process's sending core, kept across pump jobs (no start-up per job)."""
    with _senders_lock:
        if capacity not in _senders:
            if not _senders:
                atexit.register(_close_all)
            _senders[capacity] = Senders(capacity)
        return _senders[capacity]


def _close_all() -> None:
    with _senders_lock:
        made = list(_senders.values())
    for made_senders in made:
        made_senders.close_connections()


def _allow_open_files(capacity: int) -> None:
    """Raise the soft limit on open files (each send in flight holds a socket) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = capacity * 2 + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def drain(timeout: float | None = None) -> bool:
    """Finish and record every send this process has in flight (a worker about to exit).

    Returns:
        False when sends were still in flight after `timeout` seconds.
    """
    with _senders_lock:
        made = list(_senders.values())
    return all([s.drain(timeout) for s in made])


class Pump:
    """Claims for free slots until nothing is due or in flight, or its time is up."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity or settings.WEBHOOK_MAX_IN_FLIGHT
        self.senders = senders(self.capacity)
        self.cache = ClaimCache()
        self.discovery = Discovery()

    def run(self, max_seconds: float) -> int:
        """Send until nothing is due or in flight, or `max_seconds` passed, or SIGTERM.

        At `max_seconds` it returns without waiting for the sends in flight (the next pump job
        in this process counts them as busy slots); on SIGTERM it waits for them.

        Returns:
            How many attempts finished while it ran.
        """
        stop = StopFlag()
        stop.install()
        sent_before = self.senders.sent
        try:
            finished = self._loop(stop, time.monotonic() + max_seconds)
            # At the deadline, only when nothing is in flight (then it costs one last write).
            self.senders.drain(None if finished or stop.requested else 0)
        finally:
            stop.uninstall()
        if not finished:
            kick(force=True)  # there may be more: let another job (or worker) carry on
        return self.senders.sent - sent_before

    def serve(self, stop: StopFlag | Any, until: float) -> bool:
        """Claim and send until `until`, or until nothing is claimable and nothing in flight
        (then True), or `stop.requested`; sends in flight go on after it returns."""
        return self._loop(stop, until)

    def _loop(self, stop: StopFlag | Any, deadline: float) -> bool:
        """Returns True when nothing was claimable and nothing is in flight.

        Each claim is a write transaction (on SQLite it holds the one write lock the API's
        emits wait for), so a few free slots wait CLAIM_TOPUP for more to free up; a
        quarter of the slots free, or all of them, are claimed for at once. After a claim that
        got less than it asked for (the endpoints' caps bind, or the due work ran out), the
        next one comes once half of what it got has finished: with ten endpoints at their cap
        of ten, waiting CLAIM_TOPUP each time left the fast receiver idle a third of the time.
        """
        last_claim = -CLAIM_RETRY
        exhausted = short = False  # the last claim found nothing / less than it asked for
        refill = math.inf  # claim again once this many sends have finished since the last claim
        while True:
            now = time.monotonic()
            if stop.requested or now >= deadline:
                return False
            free = self.senders.free()
            wait_until = last_claim + (CLAIM_RETRY if exhausted else CLAIM_TOPUP)
            many = free == self.capacity or (
                not short and free >= self.capacity // MIN_CLAIM_FRACTION
            )
            refilled = self.senders.finished >= refill
            if free > 0 and (many or refilled or now >= wait_until):
                wanted = min(free, MAX_CLAIM)
                got = self.claim(wanted)
                last_claim, exhausted, short = now, got == 0, got < wanted
                refill = self.senders.finished + max(1, got // 2) if got else math.inf
                free -= got
                wait_until = now + (CLAIM_RETRY if exhausted else CLAIM_TOPUP)
                pause = self._rate_pause()
                if pause is not None:  # claim again as a paced endpoint's next moment nears
                    wait_until = min(wait_until, now + pause)
            if free == self.capacity and exhausted:
                pause = self._rate_pause()
                if pause is None and not self.senders.unrecorded() and not self.discovery.expired:
                    return True
                # Not idle: a rate-limited endpoint may send again soon, or outcomes not yet
                # written (the next delivery of an ordered value waits for them) will be.
                wait_until = now + min(CLAIM_RETRY, pause if pause is not None else CLAIM_RETRY)
            # Woken early whenever a send finishes or a batch is recorded.
            self.senders.wait(max(wait_until - time.monotonic(), 0.001) if free else CLAIM_RETRY)

    def _rate_pause(self) -> float | None:
        if not self.discovery.paced:
            return None
        return self.discovery.rate_pause(db_now())

    def claim(self, free: int) -> int:
        """Claim up to `free` deliveries and start each at once.

        Endpoints an emit just told of are claimed for first, in a claim of their own: a
        claim of a hundred rows on two busy cores took long enough that a newly active
        merchant's event, claimed in it, then waited for the other 99 to be loaded and
        started.
        """
        self.discovery.forget(self.senders.take_failed())
        fresh = take_fresh(MAX_FRESH)
        got = 0
        if fresh and not self.discovery.expired:
            first = self.discovery.told(fresh)
            got = self._claim(free, first)
            self.discovery.merge(first)
        else:
            self.discovery.fresh.update(fresh)
        if free - got <= 0:
            return got
        scanned_at = self.discovery.at
        more = self._claim(free - got, self.discovery)
        if not more and self.discovery.at == scanned_at:
            # Nothing in a reused scan: in-flight counts from it may be stale (other workers'
            # sends finished). Look afresh before going idle.
            self.discovery.expire()
        return got + more

    def _claim(self, free: int, discovery: Discovery) -> int:
        try:
            load = self.senders.snapshot()
            claimed = claim(self.senders.token, free, load, self.cache, discovery)
        except DATABASE_AWAY as exc:
            # The database is away: connect afresh and try again shortly; what is in flight is
            # still sent, and its outcomes are kept until they can be written.
            forget_connection()
            log.warning("claim failed (%s); trying again", exc)
            return 0
        except Exception:
            log.exception("claim failed; trying again")
            return 0
        self.senders.start(claimed)
        return len(claimed)
