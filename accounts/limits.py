"""Per-merchant limits: how many webhooks, API keys, inspectors and one-off URLs a merchant
may have (settings MERCHANT_MAX_*, raised per merchant by staff in the admin).

They bound what one merchant can make the platform do: every webhook multiplies each event
(up to 256 KiB, retried for 48 hours), every API key has its own credentials.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from redis.exceptions import RedisError

from accounts.models import ApiKey, Merchant, OAuthClient
from lib import redis_client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Countable:
    """A kind of thing a merchant may have only so many of."""

    label: str  # for messages: "You have 3 <label>"
    rows: Callable[[Merchant], models.QuerySet[Any]]


# Kinds are registered by the app that owns the model (its AppConfig.ready), so this module
# imports none of the apps above it.
_KINDS: dict[str, Countable] = {
    "api_keys": Countable("active API keys", lambda m: ApiKey.objects.filter(merchant=m).active()),
    "oauth_clients": Countable("OAuth clients", lambda m: OAuthClient.objects.filter(merchant=m)),
}


def register(kind: str, label: str, rows: Callable[[Merchant], models.QuerySet[Any]]) -> None:
    """Count `rows(merchant)` against the merchant's `kind` limit (`Merchant.LIMITS`)."""
    _KINDS[kind] = Countable(label, rows)


class LimitReached(Exception):
    """The merchant has as many as it may; the message says so and what to do."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def count(merchant: Merchant, kind: str) -> int:
    if kind not in _KINDS:
        raise ValueError(f"Unknown limit {kind!r}")
    return _KINDS[kind].rows(merchant).count()


def check_room(merchant: Merchant, kind: str) -> None:
    """Raise LimitReached when the merchant already has its most of `kind`."""
    limit, have = merchant.limit(kind), count(merchant, kind)
    if have >= limit:
        raise LimitReached(
            f"You have {have} {_KINDS[kind].label}, the most your account allows ({limit}): "
            "delete one first, or ask us to raise the limit."
        )


@contextmanager
def adding(merchant: Merchant, kind: str) -> Iterator[None]:
    """Check there is room for one more of `kind` and create it inside, atomically.

    The merchant's row is locked while counting, so two requests at once cannot both take
    the last place (SQLite's write transactions are serialised anyway).
    """
    with transaction.atomic():
        list(Merchant.objects.select_for_update().filter(pk=merchant.pk).values_list("pk"))
        check_room(merchant, kind)
        yield


def count_one_off(merchant: Merchant) -> None:
    """Count one event with a one-off `webhook_url`; LimitReached past the hourly limit.

    A fixed one-hour window per merchant in Redis. Like the API's rate limit it fails open:
    with Redis down events are still accepted (and delivered once it is back).
    """
    limit, now = merchant.limit("one_off_per_hour"), time.time()
    bucket = int(now // 3600)
    key = f"webhooks:one-off:{merchant.pk}:{bucket}"
    try:
        pipe = redis_client.connection().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 3601)
        used = int(pipe.execute()[0])
    except RedisError as exc:
        log.warning("one-off URL limit unavailable (%s); allowing the event", exc)
        return
    if used > limit:
        retry_after = max(1, int((bucket + 1) * 3600 - now))
        raise LimitReached(
            f"You sent {limit} events with a one-off webhook_url this hour, the most your "
            f"account allows: try again in {max(1, retry_after // 60)} minutes, use a "
            "webhook instead, or ask us to raise the limit.",
            retry_after=retry_after,
        )
