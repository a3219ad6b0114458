"""The pump: a worker's sender threads, fed continuously from the database.

A pump job claims exactly as many due deliveries as the process has free sender threads and
starts them at once, so nothing it holds waits (a waiting claim could outlive its lease and be
sent again by another worker). Each sender thread hands its result to a recorder thread that
writes finished attempts in bulk, so claiming never waits for recording; until a finished
attempt is recorded its row still says `delivering`, so claims subtract this process's own
unrecorded ones from an endpoint's in-flight count.

The sender threads, what they have in flight and the recorder belong to the worker process
(`Senders`), not to one pump job. A pump job hands over to a fresh one every
WEBHOOK_PUMP_SECONDS (so e-mail jobs get their turn on the worker); it returns at once, and the
next job counts the sends still in flight as busy threads. A pump that instead waited for
them waited up to a whole request deadline on hanging receivers, and claimed nothing for any
merchant meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, SimpleQueue
from types import FrameType

from django.conf import settings
from django.db import connection

from deliveries.engine.cache import ClaimCache
from deliveries.engine.claiming import Load, claim
from deliveries.engine.queueing import kick
from deliveries.engine.recording import record
from deliveries.engine.sending import AttemptResult, attempt, unsent
from deliveries.models import Delivery

log = logging.getLogger(__name__)

RECORD_EVERY = 0.05  # seconds the recorder lets results gather into one bulk write (fewer,
# larger write transactions: on SQLite each holds the write lock the API waits for)
CLAIM_RETRY = 0.1  # seconds between claims while the last one found nothing
CLAIM_TOPUP = 0.04  # seconds between claims for a few free threads: claims stay few
MIN_CLAIM_FRACTION = 4  # claim at once when a quarter of the threads are free


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
    """Writes finished attempts in bulk on its own thread (and its own database connection)."""

    def __init__(self, senders: Senders) -> None:
        super().__init__(name="recorder", daemon=True)
        self.senders = senders
        self.incoming: SimpleQueue[AttemptResult | None] = SimpleQueue()
        self.closing = threading.Event()  # set by close(): stop gathering, write now

    def run(self) -> None:
        try:
            closing = False
            while not closing:
                first = self.incoming.get()
                if first is None:
                    break
                # Let a few more finish: one write for all of them. A pump that is done does
                # not wait (the worker's next job starts only when it returns).
                self.closing.wait(RECORD_EVERY)
                batch = [first]
                with contextlib.suppress(Empty):
                    while True:
                        more = self.incoming.get_nowait()
                        if more is None:
                            closing = True
                            break
                        batch.append(more)
                record(self.senders.token, batch)  # never raises
                self.senders.recorded(batch)
        finally:
            connection.close()

    def close(self) -> None:
        """Write what is left and stop."""
        self.closing.set()
        self.incoming.put(None)
        self.join()


class Senders:
    """One worker process's sender threads, what they have in flight, and its recorder.

    Shared by the process's pump jobs, one after another (RQ runs one job at a time).
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="deliver")
        # The claim token of every delivery this process claims: a result recorded after the
        # job that claimed it has handed over is still recorded under it.
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # a send finished, or a batch was recorded
        self.load = Load(threads)
        self.in_flight = 0
        self.sent = 0
        self.recorder: Recorder | None = None

    def free(self) -> int:
        with self.lock:
            return self.threads - self.in_flight

    def snapshot(self) -> Load:
        with self.lock:
            return self.load.copy()

    def start(self, deliveries: list[Delivery]) -> None:
        """Send each claimed delivery on a sender thread, now."""
        claimed_at = time.monotonic()
        with self.lock:
            if self.recorder is None:
                self.recorder = Recorder(self)
                self.recorder.start()
            for delivery in deliveries:
                self.in_flight += 1
                self.load.by_merchant[delivery.merchant_id] += 1
                if delivery.attempts > 1:
                    self.load.retries += 1
        for delivery in deliveries:
            self.pool.submit(self._send, delivery, claimed_at)

    def _send(self, delivery: Delivery, claimed_at: float) -> None:
        result: AttemptResult | None = None
        try:
            # A claim older than this when its thread starts is not sent: its lease may be gone.
            if time.monotonic() - claimed_at > settings.WEBHOOK_LEASE_MARGIN_SECONDS / 2:
                result = unsent(delivery, "claim too old to send")
            else:
                result = attempt(delivery)  # never raises
        finally:
            self._finished(result or unsent(delivery, "the sender thread failed"))

    def _finished(self, result: AttemptResult) -> None:
        delivery = result.delivery
        with self.lock:
            self.in_flight -= 1
            self.load.unrecorded.add(delivery.pk)
            if delivery.endpoint_id is not None and not result.ok:
                self.load.held[delivery.endpoint_id] += 1
            self.load.by_merchant[delivery.merchant_id] -= 1
            if self.load.by_merchant[delivery.merchant_id] <= 0:
                del self.load.by_merchant[delivery.merchant_id]
            if delivery.attempts > 1:
                self.load.retries -= 1
            self.sent += result.sent
            assert self.recorder is not None  # closed only with nothing in flight
            self.recorder.incoming.put(result)
            self.changed.notify_all()

    def recorded(self, batch: list[AttemptResult]) -> None:
        """What the recorder wrote is no longer counted as this process's unrecorded work."""
        with self.lock:
            for result in batch:
                delivery = result.delivery
                self.load.unrecorded.discard(delivery.pk)
                if delivery.endpoint_id is not None and not result.ok:
                    self.load.held[delivery.endpoint_id] -= 1
                    if self.load.held[delivery.endpoint_id] <= 0:
                        del self.load.held[delivery.endpoint_id]
            self.changed.notify_all()

    def wait(self, timeout: float) -> None:
        """Until a send finishes or a batch is recorded, at most `timeout` seconds."""
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


def senders(threads: int) -> Senders:
    """The worker process's senders, kept across pump jobs (no thread start-up per job)."""
    with _senders_lock:
        if threads not in _senders:
            _senders[threads] = Senders(threads)
        return _senders[threads]


def drain(timeout: float | None = None) -> bool:
    """Finish and record every send this process has in flight (a worker about to exit).

    Returns:
        False when sends were still in flight after `timeout` seconds.
    """
    with _senders_lock:
        made = list(_senders.values())
    return all([s.drain(timeout) for s in made])


class Pump:
    """Claims for free threads until nothing is due or in flight, or its time is up."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or settings.WEBHOOK_WORKER_THREADS
        self.senders = senders(self.threads)
        self.cache = ClaimCache()

    def run(self, max_seconds: float) -> int:
        """Send until nothing is due or in flight, or `max_seconds` passed, or SIGTERM.

        At `max_seconds` it returns without waiting for the sends in flight (the next pump job
        in this process counts them as busy threads); on SIGTERM it waits for them.

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

    def _loop(self, stop: StopFlag, deadline: float) -> bool:
        """Returns True when nothing was claimable and nothing is in flight.

        Each claim is a write transaction (on SQLite it holds the one write lock the API's
        emits wait for), so a few free threads wait CLAIM_TOPUP for more to free up; a
        quarter of the threads free, or all of them, are claimed for at once.
        """
        last_claim = -CLAIM_RETRY
        exhausted = short = False  # the last claim found nothing / less than it asked for
        while True:
            now = time.monotonic()
            if stop.requested or now >= deadline:
                return False
            free = self.senders.free()
            wait_until = last_claim + (CLAIM_RETRY if exhausted else CLAIM_TOPUP)
            many = free == self.threads or (
                not short and free >= self.threads // MIN_CLAIM_FRACTION
            )
            if free > 0 and (many or now >= wait_until):
                got = self.claim(free)
                last_claim, exhausted, short = now, got == 0, got < free
                free -= got
                wait_until = now + (CLAIM_RETRY if exhausted else CLAIM_TOPUP)
            if free == self.threads and exhausted:
                return True
            # Woken early whenever a send finishes or a batch is recorded.
            self.senders.wait(max(wait_until - time.monotonic(), 0.001) if free else CLAIM_RETRY)

    def claim(self, free: int) -> int:
        """Claim up to `free` deliveries and start each on a sender thread at once."""
        try:
            claimed = claim(self.senders.token, free, self.senders.snapshot(), self.cache)
        except Exception:
            # A database hiccup: try again shortly; what is in flight is still recorded.
            log.exception("claim failed; trying again")
            return 0
        self.senders.start(claimed)
        return len(claimed)
