"""The Redis connection of the default RQ queue, for counters that live beside the queue
(rate limits, per-merchant slots, metrics)."""

from __future__ import annotations

import django_rq
from redis import Redis


def connection() -> Redis:
    """The default queue's connection (django-rq pools it per process)."""
    return django_rq.get_queue("default").connection
