"""Retention: delivery logs past their merchant's retention period are deleted.

What goes, per merchant, with the period being the merchant's `retention_days` or
settings.RETENTION_DAYS (or one period for everyone, given explicitly):

- attempts created before the cutoff;
- deliveries that ended (succeeded, failed or cancelled) before the cutoff, with their
  attempts. A delivery still pending or being delivered stays whatever its age, and a failed
  one that was retried counts from when that retry ended;
- events created before the cutoff that have no delivery left;
- calls to the merchant's loyalty app logged before the cutoff;
- idempotency keys older than 24 hours, for every merchant (past that, a key may be reused).

Each table is walked in windows of ids, and each window is deleted in its own short
transaction, so the database is never locked for long, an interruption loses at most the
window in progress (it rolls back), and running again carries on where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Exists, Max, Min, OuterRef, Q
from django.utils import timezone

from accounts.models import Merchant, OperatorRequestKey, PortalLink
from deliveries.models import Delivery, DeliveryAttempt, Event, IdempotencyKey
from tooling.models import LoyaltyCall

log = logging.getLogger(__name__)

BATCH_SIZE = 2000  # ids per window: a few milliseconds of locking on SQLite or PostgreSQL
ENDED = (Delivery.Status.SUCCEEDED, Delivery.Status.FAILED, Delivery.Status.CANCELLED)
PHASES = ("attempts", "deliveries", "events", "loyalty_calls")
# Phases whose rows are dated by created_at alone, by the model they walk.
_DATED: dict[str, type[models.Model]] = {
    "attempts": DeliveryAttempt,
    "events": Event,
    "loyalty_calls": LoyaltyCall,
}

# Called with (phase, fraction of the phase done, rows of the phase deleted so far).
Progress = Callable[[str, float, int], None]


@dataclass
class PruneResult:
    attempts: int = 0
    deliveries: int = 0
    events: int = 0
    loyalty_calls: int = 0
    idempotency_keys: int = 0
    oauth_tokens: int = 0
    dry_run: bool = False
    # False when `max_seconds` ran out first; `resume` says where to carry on.
    finished: bool = True
    resume: dict[str, Any] | None = None

    @property
    def total(self) -> int:
        return self.attempts + self.deliveries + self.events + self.loyalty_calls

    def summary(self) -> str:
        verb = "Would delete" if self.dry_run else "Deleted"
        return (
            f"{verb} {self.attempts:,} attempts, {self.deliveries:,} deliveries, "
            f"{self.events:,} events, {self.loyalty_calls:,} loyalty calls and "
            f"{self.idempotency_keys:,} idempotency keys."
        ) + (f" {verb} {self.oauth_tokens:,} expired OAuth tokens." if self.oauth_tokens else "")


@dataclass
class Cutoffs:
    """The moment before which each merchant's delivery logs are past retention."""

    default: datetime
    # Merchants with a retention period of their own: days -> cutoff.
    custom: dict[int, datetime] = field(default_factory=dict)

    @classmethod
    def at(cls, now: datetime, older_than_days: int | None = None) -> Cutoffs:
        """The cutoffs at `now`: per merchant, or `older_than_days` for everyone."""
        if older_than_days is not None:
            return cls(now - timedelta(days=older_than_days))
        days = (
            Merchant.objects.filter(retention_days__isnull=False)
            .values_list("retention_days", flat=True)
            .distinct()
        )
        return cls(
            now - timedelta(days=settings.RETENTION_DAYS),
            {d: now - timedelta(days=d) for d in days},
        )

    @property
    def latest(self) -> datetime:
        """Nothing created after this is past anyone's retention."""
        return max([self.default, *self.custom.values()])

    def older(self, moment: str, merchant: str) -> Q:
        """Rows whose `moment` field is before their merchant's cutoff.

        Args:
            moment: the field that dates a row, e.g. "completed_at".
            merchant: the path to the row's merchant, e.g. "delivery__merchant".
        """
        if not self.custom:
            return Q(**{f"{moment}__lt": self.default})
        q = Q(**{f"{merchant}__retention_days__isnull": True, f"{moment}__lt": self.default})
        for days, cutoff in self.custom.items():
            q |= Q(**{f"{merchant}__retention_days": days, f"{moment}__lt": cutoff})
        return q


def expired_attempts(cutoffs: Cutoffs) -> Q:
    return cutoffs.older("created_at", "delivery__merchant")


def expired_deliveries(cutoffs: Cutoffs) -> Q:
    return Q(status__in=ENDED) & cutoffs.older("completed_at", "merchant")


def expired_events(cutoffs: Cutoffs) -> Q:
    """Past the cutoff, and every delivery (if any) past it too: so in a real run, once the
    deliveries are gone, exactly the events with no delivery left."""
    kept = Delivery.objects.filter(event=OuterRef("pk")).exclude(expired_deliveries(cutoffs))
    return cutoffs.older("created_at", "merchant") & ~Exists(kept)


def prune(
    *,
    older_than_days: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    max_seconds: float | None = None,
    resume: dict[str, Any] | None = None,
    into: PruneResult | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PruneResult:
    """Delete (or, with `dry_run`, count) what is past retention, window by window.

    Args:
        older_than_days: one retention period for every merchant instead of their own.
        dry_run: count what would go, change nothing.
        now: the moment the periods are counted back from (default: now).
        batch_size: ids per window, each window one transaction.
        progress: told how far each phase got, after every window.
        max_seconds: stop after this long (between windows) and say where to resume.
        resume: where an earlier call stopped (its result's `resume`).
        into: count into this result, so a caller interrupted mid-way knows what was done.
        should_stop: asked after every window; True stops there, as `max_seconds` does.

    Returns:
        How many rows of each kind were (or would be) deleted.
    """
    now = now or timezone.now()
    cutoffs = Cutoffs.at(now, older_than_days)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    result = into or PruneResult()
    result.dry_run = dry_run
    if resume is None:  # a resumed run's first part did them
        result.idempotency_keys += prune_idempotency_keys(now, dry_run, batch_size)
        result.oauth_tokens += prune_oauth_tokens(dry_run)
    start_phase = PHASES.index(resume["phase"]) if resume else 0
    for phase in PHASES[start_phase:]:
        after = resume["after"] if resume and resume["phase"] == phase else None
        step = _PHASE_STEPS[phase]
        deleted = 0
        for lo, hi, fraction in _windows(phase, cutoffs, batch_size, after):
            deleted += step(cutoffs, lo, hi, dry_run, result)
            if progress is not None:
                progress(phase, fraction, deleted)
            # Checked after a window, so every call gets at least one done.
            out_of_time = deadline is not None and time.monotonic() > deadline
            if out_of_time or (should_stop is not None and should_stop()):
                result.finished = False
                result.resume = {"phase": phase, "after": hi}
                return result
    return result


def prune_idempotency_keys(
    now: datetime, dry_run: bool = False, batch_size: int = BATCH_SIZE
) -> int:
    """Delete (or count) idempotency keys older than 24 hours, whatever the merchant's period.

    A key only guards against a retry's second event for 24 hours; past that it is dead
    weight in the unique index every keyed emit checks. Deleted a window at a time, each in
    its own short transaction, oldest first (the created_at index). The operator API's keys
    (creating merchants) go the same way, and so do sign-in links a day after they expired.
    """
    ttl = timedelta(seconds=IdempotencyKey.TTL_SECONDS)
    expired: list[tuple[models.QuerySet[Any], str]] = [
        (IdempotencyKey.objects.filter(created_at__lt=now - ttl), "created_at"),
        (OperatorRequestKey.objects.filter(created_at__lt=now - ttl), "created_at"),
        (PortalLink.objects.filter(expires_at__lt=now - timedelta(days=1)), "expires_at"),
    ]
    deleted = 0
    for rows, order in expired:
        if dry_run:
            deleted += rows.count()
            continue
        while True:
            with transaction.atomic():
                ids = list(rows.order_by(order).values_list("pk", flat=True)[:batch_size])
                if not ids:
                    break
                deleted += rows.model.objects.filter(pk__in=ids).delete()[0]
    return deleted


def prune_oauth_tokens(dry_run: bool = False) -> int:
    """Delete (or count) expired OAuth access tokens: django-oauth-toolkit's `cleartokens`.

    A client-credentials token lives an hour (OAUTH_TOKEN_SECONDS) and a new one is taken
    for every hour of use, so without this the table only grew. The toolkit's own
    `clear_expired` deletes them (and expired grants, ID and refresh tokens), in batches.
    """
    from oauth2_provider.models import clear_expired, get_access_token_model

    expired = get_access_token_model().objects.filter(
        refresh_token__isnull=True, expires__lt=timezone.now()
    )
    before = expired.count()
    if dry_run or not before:
        return before
    clear_expired()  # by its own clock, a moment later: at least these `before` go
    return before


def _windows(
    phase: str, cutoffs: Cutoffs, batch_size: int, after: int | None
) -> Iterator[tuple[int, int, float]]:
    """Id windows [lo, hi) that may hold rows past retention, with the fraction done.

    Rows are created in id order, and nothing created after the latest cutoff can be past
    retention, so the walk ends at the highest id created before it. A delivery is created
    with or after its event and ends after it is created, so the deliveries to look at are
    those of events created before the latest cutoff.
    """
    latest = cutoffs.latest
    rows: models.QuerySet[Any]
    if phase == "deliveries":
        rows = Delivery.objects.all()
        last_event = Event.objects.filter(created_at__lt=latest).aggregate(top=Max("pk"))["top"]
        top = None
        if last_event is not None:
            top = rows.filter(event_id__lte=last_event).aggregate(top=Max("pk"))["top"]
    else:
        rows = _DATED[phase].objects.all()
        top = rows.filter(created_at__lt=latest).aggregate(top=Max("pk"))["top"]
    if top is None:
        return
    lo = rows.aggregate(low=Min("pk"))["low"] if after is None else after
    first = lo
    while lo is not None and lo <= top:
        hi = min(lo + batch_size, top + 1)
        yield lo, hi, min(1.0, (hi - first) / max(1, top + 1 - first))
        # The next window starts at the next row that exists, so gaps cost nothing.
        lo = rows.filter(pk__gte=hi).order_by("pk").values_list("pk", flat=True).first()


def _count_or_delete(rows: models.QuerySet[Any], dry_run: bool) -> int:
    """For rows with nothing to cascade to: how many there are, or delete them."""
    if dry_run:
        return rows.count()
    with transaction.atomic():
        return rows.delete()[0]


def _attempts_step(cutoffs: Cutoffs, lo: int, hi: int, dry_run: bool, result: PruneResult) -> int:
    rows = DeliveryAttempt.objects.filter(expired_attempts(cutoffs), pk__gte=lo, pk__lt=hi)
    n = _count_or_delete(rows, dry_run)
    result.attempts += n
    return n


def _deliveries_step(cutoffs: Cutoffs, lo: int, hi: int, dry_run: bool, result: PruneResult) -> int:
    rows = Delivery.objects.filter(expired_deliveries(cutoffs), pk__gte=lo, pk__lt=hi)
    if dry_run:
        ids = list(rows.values_list("pk", flat=True))
        # What a real run deletes with them: their attempts still inside the period (the
        # ones past it went in the attempts phase).
        result.attempts += (
            DeliveryAttempt.objects.filter(delivery_id__in=ids)
            .exclude(expired_attempts(cutoffs))
            .count()
        )
        result.deliveries += len(ids)
        return len(ids)
    with transaction.atomic():
        # Locked until the delete commits, so a retry racing with us (which would make a
        # delivery pending again) waits, and then finds nothing to retry.
        ids = list(rows.select_for_update(of=("self",)).values_list("pk", flat=True))
        if not ids:
            return 0
        _, per_model = Delivery.objects.filter(pk__in=ids).delete()
    result.attempts += per_model.get(DeliveryAttempt._meta.label, 0)
    n = per_model.get(Delivery._meta.label, 0)
    result.deliveries += n
    return n


def _events_step(cutoffs: Cutoffs, lo: int, hi: int, dry_run: bool, result: PruneResult) -> int:
    rows = Event.objects.filter(expired_events(cutoffs), pk__gte=lo, pk__lt=hi)
    if dry_run:
        n = rows.count()
        result.events += n
        return n
    with transaction.atomic():
        # Locked, so a delivery being added to an old event meanwhile waits for us.
        ids = list(rows.select_for_update(of=("self",)).values_list("pk", flat=True))
        if not ids:
            return 0
        _, per_model = Event.objects.filter(pk__in=ids).delete()
    # Expired deliveries the deliveries phase did not reach go with their event; count them
    # where they belong.
    result.deliveries += per_model.get(Delivery._meta.label, 0)
    result.attempts += per_model.get(DeliveryAttempt._meta.label, 0)
    n = per_model.get(Event._meta.label, 0)
    result.events += n
    return n


def _loyalty_calls_step(
    cutoffs: Cutoffs, lo: int, hi: int, dry_run: bool, result: PruneResult
) -> int:
    rows = LoyaltyCall.objects.filter(
        cutoffs.older("created_at", "merchant"), pk__gte=lo, pk__lt=hi
    )
    n = _count_or_delete(rows, dry_run)
    result.loyalty_calls += n
    return n


_PHASE_STEPS: dict[str, Callable[[Cutoffs, int, int, bool, PruneResult], int]] = {
    "attempts": _attempts_step,
    "deliveries": _deliveries_step,
    "events": _events_step,
    "loyalty_calls": _loyalty_calls_step,
}


# --- the scheduled job ----------------------------------------------------------------------

JOB_LOCK_KEY = "webhooks:prune-running"
JOB_MAX_SECONDS = 30.0  # a worker also sends deliveries: hand over to them this often
JOB_TIMEOUT = 600  # seconds; one part of the job deletes a window or two past JOB_MAX_SECONDS


def prune_job(resume: dict[str, Any] | None = None) -> str:
    """The daily retention job (enqueued by the `scheduler` process, see operations/cron.py).

    A worker running this job sends no deliveries meanwhile, so it works for at most
    JOB_MAX_SECONDS and then enqueues itself to carry on behind the delivery jobs queued
    since. A lock keeps two schedulers from pruning side by side.

    Args:
        resume: where the previous part stopped.

    Returns:
        The summary line, kept in the job's result.
    """
    from deliveries import jobs

    q = jobs.queue()
    if resume is None and not q.connection.set(JOB_LOCK_KEY, "1", nx=True, ex=3600):
        return "Skipped: a prune job is already running."
    result = prune(max_seconds=JOB_MAX_SECONDS, resume=resume, batch_size=BATCH_SIZE)
    line = result.summary()
    if result.finished:
        q.connection.delete(JOB_LOCK_KEY)
        log.info("retention: %s", line)
    else:
        q.connection.expire(JOB_LOCK_KEY, 3600)
        q.enqueue(prune_job, result.resume, job_timeout=JOB_TIMEOUT, result_ttl=86400)
        line += f" Continuing from {result.resume}."
    return line
