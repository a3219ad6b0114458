"""The sweep: every second, in every worker, the database is asked what is due.

It gives back the claims of workers that died mid-send and kicks a pump whenever a delivery
could be claimed, so a lost job, a flushed Redis or a crash between commit and enqueue
delays work but loses none; now and then it also makes due any parked ordered delivery that
nothing holds back any more. Disabled endpoints and parked breakers have nothing claimable,
so they cause no empty pumps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connection
from redis.exceptions import RedisError

from deliveries.engine.claiming import has_claimable, release_expired
from deliveries.engine.clock import db_now
from deliveries.engine.queueing import kick, queue
from deliveries.engine.sequencing import release_orphans

log = logging.getLogger(__name__)


def sweep() -> int:
    """Give back expired claims, and kick a pump if anything is claimable.

    Returns:
        How many expired claims were given back.
    """
    checkpoint = getattr(connection, "checkpoint", None)
    if checkpoint is not None:
        checkpoint()  # SQLite: copy the WAL back here rather than inside some API commit
    released = release_expired()
    if released:
        log.warning("released %d deliveries whose worker stopped mid-send", released)
    _release_orphans()
    if has_claimable():
        try:
            queued = queue().count
        except RedisError:
            return released
        kick(force=queued == 0)
    return released


ORPHANS_EVERY = 30.0  # seconds between looks for parked ordered deliveries nothing holds back
_orphans_looked_at = -ORPHANS_EVERY


def _release_orphans() -> None:
    """The ordered deliveries' safety net (deliveries/engine/sequencing.py), now and then: it
    reads every parked delivery, and a lost release only delays one."""
    global _orphans_looked_at
    if time.monotonic() - _orphans_looked_at < ORPHANS_EVERY:
        return
    _orphans_looked_at = time.monotonic()
    released = release_orphans(db_now())
    if released:
        log.warning("made due %d ordered deliveries that nothing held back", released)


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
