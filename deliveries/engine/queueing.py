"""The RQ side of the engine: one queue, a pump job kept queued, side effects as jobs.

One RQ job per HTTP request would cap a worker at RQ's per-job overhead (about 220 no-op
jobs a second on this kind of machine). Instead `kick()` keeps at most one `pump` job queued
per free worker, and a pump keeps a pool of requests in flight, refilling it from the
database as requests finish, until nothing is due.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import django_rq
from django.conf import settings
from redis.exceptions import RedisError
from rq import Queue

log = logging.getLogger(__name__)

QUEUE = "default"
PUMP_QUEUED_KEY = "webhooks:pump-queued"
PUMP_QUEUED_TTL = 30  # seconds; a lost job only delays work until the sweep notices
FRESH_KEY = "webhooks:fresh-endpoints"
FRESH_TTL = 60  # seconds; a pump takes them at its next claim, the scan finds any left over
SIDE_EFFECT_TIMEOUT = 120  # seconds an e-mail job may take (EMAIL_TIMEOUT bounds each send)


@lru_cache(maxsize=1)
def queue() -> Queue:
    """The delivery queue, made once per process: a new Redis connection per enqueue cost more
    than the enqueue itself (redis-py pools by connection object, and fork-safely)."""
    return django_rq.get_queue(QUEUE)


def kick(*, force: bool = False, fresh: Iterable[int] = ()) -> bool:
    """Make sure a pump job is queued; called after every commit that creates due work.

    Args:
        force: enqueue even if the marker says one is queued (the sweep, when work waits).
        fresh: endpoints that just got due deliveries: a busy pump looks at them at its next
            claim instead of at its next scan (`take_fresh`).

    Returns:
        True when a job was enqueued.
    """
    try:
        q = queue()
        with q.connection.pipeline(transaction=False) as pipe:
            if fresh:
                pipe.sadd(FRESH_KEY, *fresh)
                pipe.expire(FRESH_KEY, FRESH_TTL)
            pipe.set(PUMP_QUEUED_KEY, "1", nx=True, ex=PUMP_QUEUED_TTL)
            marked = pipe.execute()[-1]
        if not marked:
            if not force:
                return False
            q.connection.set(PUMP_QUEUED_KEY, "1", ex=PUMP_QUEUED_TTL)
        q.enqueue(
            "deliveries.jobs.pump",
            job_timeout=settings.WEBHOOK_PUMP_SECONDS + 120,
            result_ttl=0,
            failure_ttl=24 * 3600,
        )
    except RedisError as exc:
        # The deliveries are committed; the sweep enqueues them once Redis is back.
        log.warning("could not enqueue delivery work (%s); the sweep will retry", exc)
        return False
    return True


def take_fresh(count: int) -> set[int]:
    """Up to `count` endpoints told fresh by `kick`, each taken by one pump (empty when Redis
    is away: the next scan finds them)."""
    try:
        taken = queue().connection.spop(FRESH_KEY, count)
    except RedisError:
        return set()
    return {int(pk) for pk in taken or ()}


def pump_started() -> None:
    """A pump took the queued job: the next kick may queue another one."""
    with contextlib.suppress(RedisError):
        queue().connection.delete(PUMP_QUEUED_KEY)


def enqueue_side_effect(function: str, *args: Any) -> None:
    """Run a side effect (an e-mail) as its own job, never on a pump's sending path.

    A stalled mail server then holds one job for at most EMAIL_TIMEOUT, not a pump whose
    claims would expire meanwhile.
    """
    try:
        queue().enqueue(
            function, *args, job_timeout=SIDE_EFFECT_TIMEOUT, result_ttl=0, failure_ttl=7 * 86400
        )
    except RedisError as exc:
        log.warning("could not enqueue %s%r (%s)", function, args, exc)
