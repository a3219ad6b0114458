"""When to try again: the retry policies of the brief, as pure functions.

Exponential (default): 5 s doubling to a 15-minute cap with jitter, at most 200 attempts
within 48 hours (SalesPlay). Fixed: N retries after a cooldown (DealPOS: 1 after 7 s).
Retried: no response, 408, 429 and 5xx. Not retried: 3xx and other 4xx.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from django.conf import settings

MAX_RETRY_AFTER = timedelta(hours=24)


def is_success(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def is_retryable(status: int | None) -> bool:
    """No response at all (None), a timeout, rate limiting or a server error."""
    return status is None or status in (408, 429) or status >= 500


@dataclass(frozen=True)
class Policy:
    kind: str  # "exponential" or "fixed"
    fixed_retries: int = 1
    fixed_cooldown: int = 7

    @property
    def max_attempts(self) -> int:
        if self.kind == "fixed":
            return 1 + self.fixed_retries
        return settings.WEBHOOK_RETRY_MAX_ATTEMPTS

    @property
    def window(self) -> timedelta | None:
        if self.kind == "fixed":
            return None
        return timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_SECONDS)

    def delay(self, attempts: int) -> timedelta:
        """The wait before the next attempt, after `attempts` attempts so far."""
        if self.kind == "fixed":
            return timedelta(seconds=self.fixed_cooldown)
        base = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** min(attempts - 1, 30)
        seconds = min(base, settings.WEBHOOK_RETRY_CAP_SECONDS)
        # Jitter, so endpoints that failed together do not all retry in lockstep.
        jitter = settings.WEBHOOK_RETRY_JITTER
        return timedelta(seconds=seconds * random.uniform(1 - jitter, 1 + jitter))

    def next_attempt_at(
        self,
        attempts: int,
        created_at: datetime,
        now: datetime,
        retry_after: timedelta | None = None,
    ) -> datetime | None:
        """When to try again, or None when the policy is exhausted.

        Args:
            attempts: attempts made so far, including the one that just failed.
            created_at: when the delivery was created (the window starts there).
            now: the current time.
            retry_after: the receiver's `Retry-After`, honoured when longer than our delay.

        Returns:
            The time of the next attempt, or None to give up.
        """
        if attempts >= self.max_attempts:
            return None
        wait = self.delay(attempts)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        at = now + wait
        window = self.window
        if window is not None and at > created_at + window:
            return None
        return at


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Seconds or an HTTP date, as RFC 9110 allows; None when absent or unreadable.

    Whatever a receiver writes there, the answer is at most MAX_RETRY_AFTER and this never
    raises: "99999999999999" overflowed timedelta, and "²" passes str.isdigit() but not int().
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = int(value[:12])  # 12 digits are past any limit already
        return min(timedelta(seconds=seconds), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            return None
        return min(max(when - now, timedelta(0)), MAX_RETRY_AFTER)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
