"""The pump on a thread of its own in a worker process, beside RQ's loop.

RQ runs one job at a time: while an e-mail job waited on a stalled mail server (or any other
side job ran), a worker claimed nothing. `DeliveryWorker` (the worker class of both
`run_worker` and the stock `rqworker`) runs the pump here instead, for as long as the worker
lives; a pump job queued by `kick()` only wakes it, and RQ's loop is left to side jobs. A
process that runs no pump thread (a burst worker, a plain SimpleWorker) runs pump jobs inline.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import close_old_connections, connection

from deliveries.engine.pumping import Pump

log = logging.getLogger(__name__)

IDLE_WAIT = 1.0  # seconds an idle pump waits for a wake-up before it looks again
STRETCH = 60.0  # seconds of claiming between two checks of its database connection


class _Stopped:
    """The stop flag `Pump` polls, set when the worker stops."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    @property
    def requested(self) -> bool:
        return self.event.is_set()


class PumpThread(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="pump", daemon=True)
        self.woken = threading.Event()
        self.stopped = threading.Event()
        self.pump: Pump | None = None

    def run(self) -> None:
        pump = self.pump = Pump()
        stop = _Stopped(self.stopped)
        try:
            while not self.stopped.is_set():
                idle = True
                try:
                    idle = pump.serve(stop, time.monotonic() + STRETCH)
                except Exception:
                    log.exception("pump failed; starting again")
                finally:
                    close_old_connections()  # a connection the database dropped is replaced
                if idle:
                    self.woken.wait(IDLE_WAIT)
                    self.woken.clear()
        finally:
            connection.close()

    def wake(self) -> None:
        self.woken.set()
        if self.pump is not None:
            # Also a pump between two claims: an event emitted while it waited out a claim
            # that found nothing waited up to 100 ms more (latency at rest, p50 30 ms).
            self.pump.senders.poke()

    def stop(self, timeout: float) -> None:
        """Stop claiming; sends in flight go on (the worker drains them)."""
        self.stopped.set()
        self.woken.set()
        self.join(timeout)


_running: PumpThread | None = None


def start() -> PumpThread:
    """Start this process's pump thread (once)."""
    global _running
    if _running is None or not _running.is_alive():
        _running = PumpThread()
        _running.start()
    return _running


def wake() -> bool:
    """Wake this process's pump thread; False when the process runs none."""
    if _running is None or not _running.is_alive() or _running.stopped.is_set():
        return False
    _running.wake()
    return True


def stop(timeout: float = 10.0) -> None:
    global _running
    if _running is not None:
        _running.stop(timeout)
        _running = None
