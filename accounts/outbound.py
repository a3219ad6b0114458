"""Outbound calls made while a web request waits: at most a few per merchant at once.

Send test and the loyalty call-outs wait for a merchant's own URL inside a web server thread,
for up to 30 s. Without a bound, one merchant pointing them at a hanging receiver could hold
every thread of every web process. Each call takes a slot in Redis (shared by all web
processes) for its merchant; past MERCHANT_MAX_OUTBOUND_CALLS the call is refused at once,
and the caller answers 429.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from redis.exceptions import RedisError

from accounts.models import Merchant
from lib import redis_client

log = logging.getLogger(__name__)

# A slot older than this is forgotten: no call lasts longer (30 s deadline), so only a slot
# whose process died can be that old.
SLOT_TTL_SECONDS = 90
RETRY_AFTER_SECONDS = 5


class Busy(Exception):
    """The merchant already has its most outbound calls in flight."""

    retry_after = RETRY_AFTER_SECONDS

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You already have {limit} calls to your own URLs waiting for an answer (the "
            "most at once): wait for them to finish, then try again."
        )


def _connection():  # type: ignore[no-untyped-def]
    return redis_client.connection()


@contextmanager
def merchant_slot(merchant: Merchant) -> Iterator[None]:
    """Hold one of the merchant's outbound slots for the duration of the block.

    Raises:
        Busy: every slot is taken; nothing was sent.

    Fails open: with Redis down the call is made (as the API's rate limit does).
    """
    key, token = f"webhooks:outbound:{merchant.pk}", uuid.uuid4().hex
    limit = settings.MERCHANT_MAX_OUTBOUND_CALLS
    try:
        rank = _take(key, token)
    except RedisError as exc:
        log.warning("outbound call limit unavailable (%s); allowing the call", exc)
        yield
        return
    try:
        if rank >= limit:
            raise Busy(limit)
        yield
    finally:
        _give_back(key, token)


def _take(key: str, token: str) -> int:
    """Add our slot and return its place in line: the oldest `limit` slots may call."""
    now = time.time()
    pipe = _connection().pipeline()
    pipe.zremrangebyscore(key, 0, now - SLOT_TTL_SECONDS)
    pipe.zadd(key, {token: now})
    pipe.zrank(key, token)
    pipe.expire(key, SLOT_TTL_SECONDS)
    return int(pipe.execute()[2])


def _give_back(key: str, token: str) -> None:
    try:
        _connection().zrem(key, token)
    except RedisError as exc:
        log.warning("could not release an outbound slot (%s); it expires by itself", exc)
