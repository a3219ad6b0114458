"""A worker process's sending core: one event loop on a thread of its own, what it has in
flight, and the recorder that writes finished attempts.

The sends run on one event loop (`lib.http.aio`): a send that waits on a hanging or slow
receiver costs a socket, not a thread, so one process keeps a thousand requests in flight.
Each finished send goes to a recorder thread that writes finished attempts in bulk, so
claiming never waits for recording; until a finished attempt is recorded its row still says
`delivering`, so claims subtract this process's own unrecorded ones from an endpoint's
in-flight count. The core belongs to the worker process, not to one pump job
(`deliveries/engine/pumping.py` claims for it).

When the database goes away (a PostgreSQL restart or failover, a PgBouncer restart), the
recorder keeps the outcomes it could not write and writes them once the database answers
again: they are never dropped, so those deliveries are not sent a second time.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import resource
import threading
import time
import uuid
from queue import Empty, SimpleQueue

from django.conf import settings
from django.db import connection

from deliveries.engine.claiming import Load
from deliveries.engine.recording import record
from deliveries.engine.sending import AttemptResult, attempt_async, unsent
from deliveries.models import Delivery
from lib.http.aio import AsyncClient

log = logging.getLogger(__name__)

RECORD_EVERY = 0.05  # seconds the recorder lets results gather into one bulk write (fewer,
# larger write transactions: on SQLite each holds the write lock the API waits for)
RECORD_RETRY_MAX = 5.0  # seconds between tries to write outcomes while the database is away
DRAIN_RECORD_SECONDS = 60.0  # how long an exiting worker keeps trying to write its outcomes
# How long outcomes are kept for a database that keeps refusing them. Past this their leases
# have run out anyway (they are due again and will be sent again: at least once), and an
# error that never passes (SQLite answers "database is locked" and a broken statement alike)
# must not pile up results for ever.
KEEP_RECORD_SECONDS = 120.0
SLOW_MEMORY = 60.0  # seconds an endpoint stays in the slow lane after a slow or missing answer
BEAT = 0.02  # seconds between the event loop's heartbeats (how its lag is measured)


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
        # The event loop's lag: how late it ran the last heartbeat, and when the next is due.
        self.late = 0.0
        self.beat_due = time.monotonic()
        self.loop.call_soon(self._beat)
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

    def _beat(self) -> None:
        now = time.monotonic()
        self.late = now - self.beat_due
        self.beat_due = now + BEAT
        self.loop.call_later(BEAT, self._beat)

    def lag(self) -> float:
        """How late the event loop runs what is due, in seconds (about 0 while it keeps up).

        Sends that wait cost the loop nothing; sends that answer fast cost it CPU. A loop
        with more of those than it can turn around runs every step of every send late: a
        send claimed then waits seconds behind the others (`Pump` claims less meanwhile).
        """
        return max(self.late, time.monotonic() - self.beat_due)

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
