"""The RQ worker class the project runs: a SimpleWorker with the sweep beside it.

SimpleWorker runs jobs in its own process: the forking default costs a fork per job
(measured: about 40 jobs a second against 220), and a pump job is long-lived anyway.
"""

from __future__ import annotations

from typing import Any

from rq import worker_registration
from rq.worker import SimpleWorker

from deliveries.engine.sweeping import Sweeper


class DeliveryWorker(SimpleWorker):
    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        sweeper = None
        if not burst:
            sweeper = Sweeper(on_sweep=self.ensure_registered)
            sweeper.start()
        try:
            return super().work(burst, *args, **kwargs)
        finally:
            if sweeper is not None:
                sweeper.stopped.set()

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
