"""The pump: a worker's claims, fed continuously from the database to its sending core.

A pump job claims exactly as many due deliveries as the process has free send slots
(WEBHOOK_MAX_IN_FLIGHT) and starts them at once on the process's sending core
(`deliveries/engine/senders.py`), so nothing it holds waits (a waiting claim could outlive its
lease and be sent again by another worker).

The sending core belongs to the worker process, not to one pump job. A pump job hands over to
a fresh one every WEBHOOK_PUMP_SECONDS (so e-mail jobs get their turn on the worker); it
returns at once, and the next job counts the sends still in flight as busy slots.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from types import FrameType
from typing import Any

from django.conf import settings

from deliveries.engine.cache import ClaimCache
from deliveries.engine.claiming import Discovery, claim
from deliveries.engine.clock import db_now
from deliveries.engine.finding import MAX_FRESH
from deliveries.engine.queueing import kick, take_fresh
from deliveries.engine.recording import DATABASE_AWAY, forget_connection
from deliveries.engine.senders import BEAT, senders

log = logging.getLogger(__name__)

CLAIM_RETRY = 0.1  # seconds between claims while the last one found nothing
CLAIM_TOPUP = 0.04  # seconds between claims for a few free slots: claims stay few
MIN_CLAIM_FRACTION = 4  # claim at once when a quarter of the slots are free
# The most one claim takes: a thousand free slots are filled by several claims in a row, so a
# merchant whose event comes meanwhile waits for one claim's work, not for a thousand sends'.
# 100, not 200: draining a crowd of 10,000 on two busy cores, a claim of 200 took long enough
# that a newcomer's event waited p50 330 ms to be claimed (100: 60 ms), at the same drain rate.
MAX_CLAIM = 100
# A sending loop this late (seconds) is busy: more sends would only make every send later.
# The pump then claims only for endpoints an emit just told of, at most BUSY_CLAIM at a time.
BUSY_LAG = 0.03
BUSY_CLAIM = 10


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
        While the sending loop runs late (`Senders.lag`) it claims only for endpoints an emit
        just told of: in a crowd, a newcomer's send claimed onto a loop with 900 fast sends
        in flight waited up to a second there before it reached the receiver.
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
            # Below a claim's worth in flight a late loop is the machine's, not ours: claim.
            busy = free < self.capacity - MAX_CLAIM and self.senders.lag() > BUSY_LAG
            if free > 0 and busy:
                self.claim_fresh(min(free, BUSY_CLAIM), scan_follows=False)
                time.sleep(BEAT / 2)
                continue
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
        got = self.claim_fresh(free, scan_follows=True)
        if free - got <= 0:
            return got
        scanned_at = self.discovery.at
        more = self._claim(free - got, self.discovery)
        if not more and self.discovery.at == scanned_at:
            # Nothing in a reused scan: in-flight counts from it may be stale (other workers'
            # sends finished). Look afresh before going idle.
            self.discovery.expire()
        return got + more

    def claim_fresh(self, free: int, *, scan_follows: bool) -> int:
        """Claim up to `free` deliveries of the endpoints an emit just told of.

        Args:
            scan_follows: a claim that scans comes right after; an expired discovery then
                leaves them to it (they come first in a scan).
        """
        self.discovery.forget(self.senders.take_failed())
        fresh = take_fresh(MAX_FRESH)
        if not fresh:
            return 0
        if scan_follows and self.discovery.expired:
            self.discovery.fresh.update(fresh)
            return 0
        first = self.discovery.told(fresh)
        got = self._claim(free, first)
        self.discovery.merge(first)
        return got

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
