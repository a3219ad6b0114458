"""The RQ worker class the project runs: a SimpleWorker with the pump and the sweep beside it.

SimpleWorker runs jobs in its own process: the forking default costs a fork per job
(about 40 jobs a second against 220 on this kind of machine). The pump runs on a thread of its
own (`deliveries.engine.pump_thread`), so RQ's loop only wakes it and runs side jobs
(e-mails): a stalled mail server never stops claiming.
"""

from __future__ import annotations

from typing import Any

from rq import worker_registration
from rq.worker import SimpleWorker

from deliveries.engine import pump_thread
from deliveries.engine.senders import drain
from deliveries.engine.sweeping import Sweeper
from lib import http


class DeliveryWorker(SimpleWorker):
    _sweeper: Sweeper | None = None

    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        if not burst:
            self._sweeper = Sweeper(on_sweep=self.ensure_registered)
            self._sweeper.start()
            pump_thread.start()
        try:
            return super().work(burst, *args, **kwargs)
        finally:
            self._stop_sweeper()
            pump_thread.stop()
            self._finish_sends()

    def register_death(self) -> None:
        # The sweep stops first: a sweep that ended just after RQ took this worker out of the
        # registry put it back (ensure_registered), and /healthz then counted a stopped
        # worker until its key expired (seen under load, a slower sweep widening the gap).
        self._stop_sweeper()
        pump_thread.stop()
        self._finish_sends()  # while the worker still shows as alive
        super().register_death()

    def _stop_sweeper(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stopped.set()
            if self._sweeper.is_alive():
                self._sweeper.join(timeout=10)

    def _finish_sends(self) -> None:
        # A pump job hands over without waiting for its sends in flight; record them before
        # the process exits (each is bounded by its request deadline).
        if not drain(timeout=http.MAX_TIMEOUT + 5):
            self.log.warning("exiting with sends still in flight; their leases will expire")

    def ensure_registered(self) -> None:
        """Put this worker back in RQ's registry if Redis lost it (restarted without its data).

        RQ registers a worker once, at start; without this, /healthz and the RQ dashboard
        showed no worker until the workers were restarted.
        """
        if self.connection.sismember(worker_registration.REDIS_WORKER_KEYS, self.key):
            return
        with self.connection.pipeline() as pipeline:
            pipeline.hset(self.key, mapping=self.serialize())
            worker_registration.register(self, pipeline)
            pipeline.expire(self.key, self.worker_ttl + 60)
            pipeline.execute()
