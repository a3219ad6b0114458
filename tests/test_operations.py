"""Staff triage pages, the RQ dashboard, and long commands (recover, seed) with progress."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from accounts.models import Merchant, User
from catalogue.models import EventType
from deliveries import emit
from deliveries.engine import disable_endpoint
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from tests.conftest import Receiver

BASE = Path(__file__).resolve().parent.parent
S = Delivery.Status


def deliveries_for(endpoint: Endpoint, statuses: list[str], *, hours_ago: float = 1) -> None:
    """One event per status, `hours_ago` old, each delivered to `endpoint` with that outcome."""
    at = timezone.now() - timedelta(hours=hours_ago)
    for status in statuses:
        event = Event.objects.create_event(endpoint.merchant, "receipts.update", {})
        Event.objects.filter(pk=event.pk).update(created_at=at)
        Delivery.objects.create(
            merchant=endpoint.merchant,
            event=event,
            endpoint=endpoint,
            status=status,
            attempts=1,
            last_status_code=200 if status == S.SUCCEEDED else 502,
            last_error="" if status == S.SUCCEEDED else "HTTP 502",
            next_attempt_at=at + timedelta(days=1) if status == S.PENDING else None,
            created_at=at,
            completed_at=None if status == S.PENDING else at,
        )


def test_it_lists_the_endpoints_failing_most_in_the_last_24_hours(
    staff_client: Client, merchant: Merchant, outsider_merchant: Merchant
) -> None:
    worst = Endpoint.objects.create(merchant=merchant, url="https://u:hunter22@worst.example.com/")
    disable_endpoint(
        worst, Endpoint.DisabledReason.FAILING, "Every delivery failed since yesterday."
    )
    retrying = Endpoint.objects.create(merchant=outsider_merchant, url="https://retry.example.com/")
    healthy = Endpoint.objects.create(merchant=merchant, url="https://healthy.example.com/")
    long_ago = Endpoint.objects.create(merchant=merchant, url="https://long-ago.example.com/")
    # Oldest first, as events arrive.
    deliveries_for(long_ago, [S.FAILED, S.FAILED, S.FAILED, S.FAILED], hours_ago=30)
    deliveries_for(worst, [S.FAILED, S.FAILED, S.CANCELLED, S.SUCCEEDED])
    deliveries_for(retrying, [S.PENDING, S.SUCCEEDED])
    deliveries_for(healthy, [S.SUCCEEDED, S.SUCCEEDED])

    page = staff_client.get("/admin/endpoints/endpoint/failing/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Endpoints failing most in the last 24 hours" in html
    assert html.index("worst.example.com") < html.index("retry.example.com")
    assert "healthy.example.com" not in html
    assert "long-ago.example.com" not in html
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.DOTALL)
    worst_row = next(r for r in rows if "worst.example.com" in r)
    for text in ("Owner Coffee", "Auto-disabled", "<td>3</td>", "<td>4</td>", "75%", "HTTP 502"):
        assert text in worst_row, text
    assert "hunter22" not in html
    retry_row = next(r for r in rows if "retry.example.com" in r)
    assert "Outsider Bakery" in retry_row and "50%" in retry_row
    # The endpoint list links to it.
    assert (
        b'href="/admin/endpoints/endpoint/failing/"'
        in staff_client.get("/admin/endpoints/endpoint/").content
    )


def test_it_says_so_when_nothing_failed(staff_client: Client) -> None:
    page = staff_client.get("/admin/endpoints/endpoint/failing/")
    assert b"No endpoint has failed in the last 24 hours." in page.content


def test_it_links_the_operations_pages_from_the_admin_index(
    staff_client: Client, redis_conn: Any
) -> None:
    index = staff_client.get("/admin/").content.decode()
    assert 'href="/admin/endpoints/endpoint/failing/"' in index
    assert 'href="/admin/rq/"' in index
    dashboard = staff_client.get("/admin/rq/")
    assert dashboard.status_code == 200
    assert b"default" in dashboard.content  # the delivery queue, with its workers and jobs
    assert staff_client.get("/admin/rq/queues/0/failed/").status_code == 200
    assert staff_client.get("/admin/rq/workers/0/").status_code == 200


@pytest.mark.parametrize(
    "path", ["/admin/rq/", "/admin/rq/queues/0/failed/", "/admin/endpoints/endpoint/failing/"]
)
def test_it_keeps_the_queue_pages_for_staff(
    client: Client, owner: User, path: str, redis_conn: Any
) -> None:
    anonymous = client.get(path)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    client.force_login(owner)
    merchant_user = client.get(path)
    assert merchant_user.status_code == 302 and "/admin/login/" in merchant_user["Location"]


# --- recover_deliveries -------------------------------------------------------------------


def recover(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("recover_deliveries", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db(transaction=True)
def test_it_recovers_failed_deliveries_and_they_are_sent_again(
    merchant: Merchant,
    make_endpoint: Callable[..., Endpoint],
    receiver: Receiver,
    work: Callable[..., None],
) -> None:
    endpoint = make_endpoint(receiver.url("/recovered"))
    for n in range(3):
        emit(merchant, "receipts.update", {"n": n})
    Delivery.objects.update(status=S.FAILED, completed_at=timezone.now(), next_attempt_at=None)
    old = Delivery.objects.order_by("pk").first()
    assert old is not None
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))

    out, err = recover("--webhook", endpoint.public_id, "--since", "24h")
    assert "Scheduled 2 deliveries again across 1 webhook." in out
    assert "webhooks" in err and "100%" in err
    work(until=lambda: Delivery.objects.filter(status=S.SUCCEEDED).count() == 2)
    assert len(receiver.requests) == 2
    old.refresh_from_db()
    assert old.status == S.FAILED  # created before --since

    out, _ = recover("--merchant", merchant.public_id)
    assert "Scheduled 1 delivery again" in out


def test_it_skips_disabled_webhooks_and_names_them(
    merchant: Merchant, make_endpoint: Callable[..., Endpoint]
) -> None:
    enabled = make_endpoint("https://a.example.com/hook")
    disabled = make_endpoint("https://b.example.com/hook")
    emit(merchant, "receipts.update", {})
    Delivery.objects.update(status=S.FAILED, completed_at=timezone.now(), next_attempt_at=None)
    disable_endpoint(disabled)
    out, _ = recover("--merchant", merchant.public_id, "--since", "2020-01-01")
    assert "Scheduled 1 delivery again across 1 webhook." in out
    assert f"Skipped disabled webhook(s) (enable them first): {disabled.public_id}" in out
    assert Delivery.objects.get(endpoint=enabled).status == S.PENDING
    assert Delivery.objects.get(endpoint=disabled).status == S.FAILED


def test_it_rejects_unknown_webhooks_and_malformed_times(merchant: Merchant) -> None:
    with pytest.raises(CommandError, match="No webhook with id 'ep_nope'"):
        recover("--webhook", "ep_nope")
    with pytest.raises(CommandError, match="No merchant with id"):
        recover("--merchant", "mrc_nope")
    with pytest.raises(CommandError, match="--since: expected 24h"):
        recover("--merchant", merchant.public_id, "--since", "yesterday")


# --- seed_demo --------------------------------------------------------------------------


def test_it_shows_progress_when_seeding_many_events(
    db: None, settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", "--events", "150", stdout=out, stderr=err)
    assert re.search(r"^events\s+\[#+\] 100% 150/150$", err.getvalue(), re.MULTILINE), err
    assert "Demo login: user 'demo'" in out.getvalue()
    demo = User.objects.get(username="demo")
    assert Event.objects.filter(merchant=demo.merchant).count() == 150
    assert EventType.objects.filter(events__merchant=demo.merchant).distinct().count() == 3
