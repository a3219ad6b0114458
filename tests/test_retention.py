"""Retention: what is past each merchant's period goes, row by row, and nothing else."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rq.cron import CronJob

from accounts.models import Merchant
from catalogue.models import EventType
from deliveries.models import Delivery, DeliveryAttempt, Event
from endpoints.models import Endpoint
from operations import retention
from tests.conftest import database_url
from tests.faults.conftest import wait_until
from tooling.models import LoyaltyCall

BASE = Path(__file__).resolve().parent.parent
DEFAULT_DAYS = 30
# Days ago, oldest first, each a day or more away from a period's end (7, 30 and 90 days).
AGES = [200, 91, 89, 35, 31, 29, 8, 6, 1]
S = Delivery.Status


@dataclass
class Seeded:
    """A database with rows on both sides of every merchant's period, ids in time order."""

    now: datetime
    merchants: list[Merchant] = field(default_factory=list)

    def period(self, merchant_id: int, override: int | None = None) -> timedelta:
        if override is not None:
            return timedelta(days=override)
        merchant = next(m for m in self.merchants if m.pk == merchant_id)
        return timedelta(days=merchant.retention_days or DEFAULT_DAYS)

    def expected_survivors(self, override: int | None = None) -> dict[str, set[int]]:
        """What retention keeps, worked out from the rows one by one, independently of
        operations/retention.py."""

        def past(moment: datetime | None, merchant_id: int) -> bool:
            return moment is not None and moment < self.now - self.period(merchant_id, override)

        deliveries = {
            d.pk: d for d in Delivery.objects.all().only("status", "completed_at", "merchant_id")
        }
        pruned_deliveries = {
            pk
            for pk, d in deliveries.items()
            if d.status in (S.SUCCEEDED, S.FAILED, S.CANCELLED)
            and past(d.completed_at, d.merchant_id)
        }
        attempts = {a.pk: a for a in DeliveryAttempt.objects.select_related("delivery")}
        kept_attempts = {
            pk
            for pk, a in attempts.items()
            if a.delivery_id not in pruned_deliveries
            and not past(a.created_at, a.delivery.merchant_id)
        }
        kept_events = set()
        for event in Event.objects.prefetch_related("deliveries"):
            left = [d.pk for d in event.deliveries.all() if d.pk not in pruned_deliveries]
            if left or not past(event.created_at, event.merchant_id):
                kept_events.add(event.pk)
        return {
            "attempts": kept_attempts,
            "deliveries": set(deliveries) - pruned_deliveries,
            "events": kept_events,
        }


def survivors() -> dict[str, set[int]]:
    return {
        "attempts": set(DeliveryAttempt.objects.values_list("pk", flat=True)),
        "deliveries": set(Delivery.objects.values_list("pk", flat=True)),
        "events": set(Event.objects.values_list("pk", flat=True)),
    }


def counts() -> dict[str, int]:
    return {name: len(ids) for name, ids in survivors().items()}


def add_event(merchant: Merchant, at: datetime, sequence: int) -> Event:
    return Event.objects.create(
        merchant=merchant,
        event_type=EventType.objects.get(name="receipts.update"),
        data={"total": "9.99"},
        sequence=sequence,
        created_at=at,
    )


def add_delivery(
    event: Event,
    endpoint: Endpoint,
    status: str,
    completed_at: datetime | None,
    attempts_at: list[datetime],
) -> Delivery:
    delivery = Delivery.objects.create(
        merchant=event.merchant,
        event=event,
        endpoint=endpoint,
        status=status,
        attempts=len(attempts_at),
        created_at=event.created_at,
        completed_at=completed_at,
        next_attempt_at=event.created_at + timedelta(days=400) if status == S.PENDING else None,
    )
    for number, at in enumerate(attempts_at, start=1):
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            created_at=at,
            url="https://receiver.example.com/hook",
            response_status=200 if status == S.SUCCEEDED and number == len(attempts_at) else 500,
            succeeded=status == S.SUCCEEDED and number == len(attempts_at),
        )
    return delivery


@pytest.fixture
def seeded(db: None) -> Seeded:
    now = timezone.now()
    data = Seeded(now=now)
    for name, days in [("Default Deli", None), ("Weekly Wines", 7), ("Quarterly Cafe", 90)]:
        merchant = Merchant.objects.create(name=name, retention_days=days)
        endpoint = Endpoint.objects.create(merchant=merchant, url="https://r.example.com/hook")
        data.merchants.append(merchant)
        sequence = 0
        for age in AGES:
            at = now - timedelta(days=age)

            def soon(delta: timedelta, at: datetime = at) -> datetime:
                return min(at + delta, now - timedelta(minutes=1))

            sequence += 1
            event = add_event(merchant, at, sequence)
            add_delivery(
                event,
                endpoint,
                S.SUCCEEDED,
                soon(timedelta(minutes=1)),
                [at, soon(timedelta(minutes=1))],
            )
            # A failed delivery ends two days after its event: past the period later.
            add_delivery(
                event, endpoint, S.FAILED, soon(timedelta(days=2)), [at, soon(timedelta(days=2))]
            )
            add_delivery(event, endpoint, S.CANCELLED, soon(timedelta(hours=1)), [])
            # Still retrying: kept whatever its age, and so is its event.
            add_delivery(event, endpoint, S.PENDING, None, [at])
            sequence += 1
            add_event(merchant, at, sequence)  # an event no endpoint was subscribed to
            sequence += 1
            retried = add_event(merchant, at, sequence)
            # Failed again after a manual retry yesterday: counts from yesterday.
            add_delivery(retried, endpoint, S.FAILED, now - timedelta(days=1), [at])
            sequence += 1
            done = add_event(merchant, at, sequence)
            add_delivery(done, endpoint, S.SUCCEEDED, soon(timedelta(seconds=2)), [at])
    return data


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("prune_deliveries", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def summary_numbers(text: str) -> tuple[int, int, int]:
    match = re.search(r"(\d[\d,]*) attempts, (\d[\d,]*) deliveries, (\d[\d,]*) events", text)
    assert match, text
    return tuple(int(g.replace(",", "")) for g in match.groups())  # type: ignore[return-value]


def test_it_prunes_exactly_what_is_past_each_merchants_period(seeded: Seeded) -> None:
    before = survivors()
    expected = seeded.expected_survivors()
    # The seed has something on both sides for each kind of row.
    for kind in before:
        assert 0 < len(expected[kind]) < len(before[kind]), kind

    out, err = run("--batch-size", "3")

    assert survivors() == expected
    deleted = tuple(len(before[k]) - len(expected[k]) for k in ("attempts", "deliveries", "events"))
    assert summary_numbers(out) == deleted
    assert out.strip().splitlines()[-1].startswith("Deleted ")
    # A progress bar per phase, ending full.
    for phase in ("attempts", "deliveries", "events"):
        assert re.search(rf"^{phase}\s+\[#+\] 100%", err, re.MULTILINE), err


def test_it_keeps_active_and_recent_deliveries_whatever_their_age(seeded: Seeded) -> None:
    run()
    oldest = seeded.now - timedelta(days=150)
    pending = Delivery.objects.filter(status=S.PENDING, created_at__lt=oldest)
    assert pending.count() == len(seeded.merchants)  # the 200-day-old ones, one per merchant
    retried = Delivery.objects.filter(
        status=S.FAILED, created_at__lt=oldest, completed_at__gt=seeded.now - timedelta(days=2)
    )
    assert retried.count() == len(seeded.merchants)
    assert not Event.objects.filter(created_at__lt=oldest, deliveries__isnull=True).exists()


def test_it_changes_nothing_on_a_dry_run_and_counts_what_a_real_run_deletes(
    seeded: Seeded,
) -> None:
    before = survivors()
    out, _ = run("--dry-run", "--batch-size", "4")
    assert survivors() == before
    assert "Would delete" in out
    would = summary_numbers(out)

    out, _ = run()
    assert summary_numbers(out) == would
    assert survivors() == seeded.expected_survivors()


def test_it_applies_one_period_to_everyone_with_older_than(seeded: Seeded) -> None:
    expected = seeded.expected_survivors(override=60)
    out, _ = run("--older-than", "60")
    assert "older than 60 days, for every merchant" in out
    assert survivors() == expected
    # The weekly merchant's 8-day-old deliveries stayed: its own 7 days did not apply.
    weekly = seeded.merchants[1]
    assert Delivery.objects.filter(
        merchant=weekly, status=S.SUCCEEDED, created_at__lt=seeded.now - timedelta(days=7)
    ).exists()


def test_it_prunes_loyalty_calls_past_each_merchants_period(db: None, settings: Any) -> None:
    settings.RETENTION_DAYS = 30
    now = timezone.now()
    weekly = Merchant.objects.create(name="Weekly Wines", retention_days=7)
    default = Merchant.objects.create(name="Default Deli")
    for merchant, days in [(weekly, 1), (weekly, 10), (default, 10), (default, 40)]:
        LoyaltyCall.objects.create(
            merchant=merchant,
            action="order-complete",
            message_id=f"msg_{merchant.pk}_{days}",
            url="https://loyalty.example.com/hook",
            created_at=now - timedelta(days=days),
        )

    out, _ = run("--dry-run")
    assert (
        "Would delete 0 attempts, 0 deliveries, 0 events, 2 loyalty calls and 0 idempotency keys."
        in out
    )
    assert LoyaltyCall.objects.count() == 4

    out, err = run()

    assert "0 events, 2 loyalty calls and 0 idempotency keys." in out
    assert re.search(r"^loyalty_calls\s+\[#+\] 100%", err, re.MULTILINE), err
    left = set(LoyaltyCall.objects.values_list("merchant__name", "message_id"))
    assert left == {
        ("Weekly Wines", f"msg_{weekly.pk}_1"),
        ("Default Deli", f"msg_{default.pk}_10"),
    }


def test_it_refuses_a_period_under_a_day(db: None) -> None:
    with pytest.raises(CommandError, match="at least 1 day"):
        run("--older-than", "0")


def test_it_lets_staff_set_a_merchants_retention_in_the_admin(
    staff_client: Client, merchant: Merchant
) -> None:
    url = f"/admin/accounts/merchant/{merchant.pk}/change/"
    form = staff_client.get(url)
    assert b"empty means the default (30)" in form.content
    response = staff_client.post(url, {"name": merchant.name, "retention_days": "7"})
    assert response.status_code == 302
    merchant.refresh_from_db()
    assert merchant.retention_days == 7
    refused = staff_client.post(url, {"name": merchant.name, "retention_days": "0"})
    assert refused.status_code == 200
    assert b"greater than or equal to 1" in refused.content
    merchant.refresh_from_db()
    assert merchant.retention_days == 7


# Committed, as in production: django-rq enqueues when the transaction commits.
@pytest.mark.django_db(transaction=True)
def test_it_prunes_daily_through_the_scheduler_and_a_worker(
    seeded: Seeded, work: Any, redis_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_rq.cron import DjangoCronScheduler

    scheduler = DjangoCronScheduler()
    scheduler.load_config_from_file("operations.cron")
    [job] = scheduler.get_jobs()
    assert job.func is retention.prune_job
    assert (job.cron, job.queue_name) == ("17 3 * * *", "default")
    assert job.get_next_enqueue_time() - timezone.now() <= timedelta(days=1)

    # Each part of the job does one window of 5 ids and hands over, as a long prune would.
    monkeypatch.setattr(retention, "JOB_MAX_SECONDS", 0.0)
    monkeypatch.setattr(retention, "BATCH_SIZE", 5)
    expected = seeded.expected_survivors()
    CronJob.enqueue(job, redis_conn)
    work()

    assert survivors() == expected
    assert not redis_conn.exists(retention.JOB_LOCK_KEY)


def test_it_skips_the_job_while_another_prune_job_runs(seeded: Seeded, redis_conn: Any) -> None:
    redis_conn.set(retention.JOB_LOCK_KEY, "1")
    before = counts()
    assert retention.prune_job() == "Skipped: a prune job is already running."
    assert counts() == before


@pytest.mark.django_db(transaction=True)
def test_it_stops_cleanly_on_ctrl_c_and_finishes_when_run_again(merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="https://r.example.com/hook")
    old = timezone.now() - timedelta(days=40)
    events = Event.objects.bulk_create(
        Event(
            merchant=merchant,
            event_type=EventType.objects.get(name="receipts.update"),
            sequence=n,
            created_at=old,
        )
        for n in range(1, 301)
    )
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            merchant=merchant,
            event=event,
            endpoint=endpoint,
            status=S.SUCCEEDED,
            created_at=old,
            completed_at=old,
        )
        for event in events
        for _ in range(10)
    )
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(delivery=d, number=1, created_at=old, url="-") for d in deliveries
    )
    total = counts()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webhooks_project.settings_test",
        "DATABASE_URL": database_url(),
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "prune_deliveries", "--batch-size", "5"],
        cwd=BASE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: DeliveryAttempt.objects.count() < total["attempts"], 60, "pruning")
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "Interrupted" in out and "Run the command again" in err
    # What it says it deleted is exactly what is gone: the window in progress rolled back.
    gone = {k: total[k] - n for k, n in counts().items()}
    assert summary_numbers(out) == (gone["attempts"], gone["deliveries"], gone["events"])
    assert 0 < sum(gone.values()) < sum(total.values())

    out, _ = run()
    assert counts() == {"attempts": 0, "deliveries": 0, "events": 0}
    assert summary_numbers(out) == (
        total["attempts"] - gone["attempts"],
        total["deliveries"] - gone["deliveries"],
        total["events"] - gone["events"],
    )
