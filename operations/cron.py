"""Periodic jobs, enqueued by the Procfile's `scheduler` process (`manage.py rqcron ...`).

The scheduler only enqueues; workers run the jobs. Run one scheduler per deployment (a
second one would enqueue every job twice; the prune job's lock makes that harmless).
"""

from __future__ import annotations

from django.conf import settings
from rq import cron

from deliveries import jobs
from operations import retention

cron.register(
    retention.prune_job,
    jobs.QUEUE,
    cron=settings.RETENTION_SCHEDULE,
    job_timeout=retention.JOB_TIMEOUT,
    result_ttl=7 * 86400,  # the summary line stays in the RQ dashboard for a week
    name="prune_deliveries",
)
