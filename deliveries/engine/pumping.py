"""The pump: a pool of sender threads fed continuously from the database.

The main thread claims exactly as many due deliveries as it has free sender threads and
starts them at once, so nothing it holds waits (a waiting claim could outlive its lease and be
sent again by another worker). A recorder thread writes finished attempts in bulk meanwhile,
so claiming never waits for recording; until a finished attempt is recorded its row still
says `delivering`, so claims subtract this pump's own unrecorded ones from an endpoint's
in-flight count.
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
from functools import lru_cache
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

RECORD_EVERY = 0.02  # seconds the recorder lets results gather into one bulk write
CLAIM_RETRY = 0.1  # seconds between claims while the last one found nothing
CLAIM_TOPUP = 0.02  # seconds between claims for a few free threads: claims stay few
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

    def __init__(self, token: str) -> None:
        super().__init__(name="recorder", daemon=True)
        self.token = token
        self.incoming: SimpleQueue[list[AttemptResult] | None] = SimpleQueue()
        self.recorded: SimpleQueue[list[AttemptResult]] = SimpleQueue()

    def run(self) -> None:
        try:
            closing = False
            while not closing:
                batch = self.incoming.get()
                if batch is None:
                    break
                time.sleep(RECORD_EVERY)  # let a few more finish: one write for all of them
                with contextlib.suppress(Empty):
                    while True:
                        more = self.incoming.get_nowait()
                        if more is None:
                            closing = True
                            break
                        batch.extend(more)
                record(self.token, batch)  # never raises
                self.recorded.put(batch)
        finally:
            connection.close()

    def close(self) -> None:
        """Write what is left and stop."""
        self.incoming.put(None)
        self.join()


@lru_cache(maxsize=4)
def sender_pool(threads: int) -> ThreadPoolExecutor:
    """The worker process's sender threads, kept across pump jobs (no thread start-up per job)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="deliver")


class Pump:
    """Claims for free threads, sends, and records, until nothing is due."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or settings.WEBHOOK_WORKER_THREADS
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.load = Load(self.threads)
        self.in_flight = 0
        self.done: SimpleQueue[AttemptResult] = SimpleQueue()
        self.recorder = Recorder(self.token)
        self.sent = 0
        self.peak_in_flight = 0
        self.cache = ClaimCache()
        # A claim older than this when its thread starts is not sent: its lease may be gone.
        self.send_within = settings.WEBHOOK_LEASE_MARGIN_SECONDS / 2

    def run(self, max_seconds: float) -> int:
        """Send until nothing is due, or `max_seconds` passed, or SIGTERM.

        Returns:
            How many attempts were made.
        """
        stop = StopFlag()
        stop.install()
        deadline = time.monotonic() + max_seconds
        self.recorder.start()
        try:
            self._loop(sender_pool(self.threads), stop, deadline)
        finally:
            self.recorder.close()
            stop.uninstall()
        if time.monotonic() >= deadline or stop.requested:
            kick(force=True)  # there may be more: let another job (or worker) carry on
        return self.sent

    def _loop(self, pool: ThreadPoolExecutor, stop: StopFlag, deadline: float) -> None:
        next_claim = 0.0
        exhausted = False
        while True:
            now = time.monotonic()
            claiming = not stop.requested and now < deadline
            free = self.threads - self.in_flight
            if claiming and free > 0 and (now >= next_claim or not self.in_flight):
                self.forget_recorded()
                got = self.claim(pool, free)
                exhausted = got == 0
                if exhausted:
                    next_claim = now + CLAIM_RETRY
                elif got < free or free < self.threads // MIN_CLAIM_FRACTION:
                    next_claim = now + CLAIM_TOPUP
                else:
                    next_claim = 0.0
            if not self.in_flight:
                if exhausted or not claiming:
                    return
                continue
            self.collect(timeout=CLAIM_TOPUP if free else CLAIM_RETRY)

    def claim(self, pool: ThreadPoolExecutor, free: int) -> int:
        """Claim up to `free` deliveries and start each on a sender thread at once."""
        try:
            claimed = claim(self.token, free, self.load, self.cache)
        except Exception:
            # A database hiccup: try again shortly; what is in flight is still recorded.
            log.exception("claim failed; trying again")
            return 0
        claimed_at = time.monotonic()
        for delivery in claimed:
            self.in_flight += 1
            self.load.by_merchant[delivery.merchant_id] += 1
            if delivery.attempts > 1:
                self.load.retries += 1
            pool.submit(self._send, delivery, claimed_at)
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return len(claimed)

    def _send(self, delivery: Delivery, claimed_at: float) -> None:
        if time.monotonic() - claimed_at > self.send_within:
            self.done.put(unsent(delivery, "claim too old to send"))
            return
        self.done.put(attempt(delivery))

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
            self.load.unrecorded.add(delivery.pk)
            if delivery.endpoint_id is not None and not result.ok:
                self.load.held[delivery.endpoint_id] += 1
            self.in_flight -= 1
            self.load.by_merchant[delivery.merchant_id] -= 1
            if self.load.by_merchant[delivery.merchant_id] <= 0:
                del self.load.by_merchant[delivery.merchant_id]
            if delivery.attempts > 1:
                self.load.retries -= 1
        self.recorder.incoming.put(results)
        self.sent += sum(1 for r in results if r.sent)

    def forget_recorded(self) -> None:
        """What the recorder wrote is no longer counted as this pump's unrecorded work."""
        with contextlib.suppress(Empty):
            while True:
                for result in self.recorder.recorded.get_nowait():
                    delivery = result.delivery
                    self.load.unrecorded.discard(delivery.pk)
                    if delivery.endpoint_id is not None and not result.ok:
                        self.load.held[delivery.endpoint_id] -= 1
                        if self.load.held[delivery.endpoint_id] <= 0:
                            del self.load.held[delivery.endpoint_id]
