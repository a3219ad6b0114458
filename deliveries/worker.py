"""The RQ worker class the project runs: a SimpleWorker with the sweep beside it.

SimpleWorker runs jobs in its own process: the forking default costs a fork per job
(PERF_NOTES: about 40 jobs a second against 220), and a pump job is long-lived anyway.
"""

from __future__ import annotations

from typing import Any

from rq.worker import SimpleWorker

from deliveries.jobs import Sweeper


class DeliveryWorker(SimpleWorker):
    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        sweeper = None
        if not burst:
            sweeper = Sweeper()
            sweeper.start()
        try:
            return super().work(burst, *args, **kwargs)
        finally:
            if sweeper is not None:
                sweeper.stopped.set()
