"""The dashboard's "Send past events": a new webhook gets the merchant's earlier events.

The confirmation page counts what would be sent for the chosen period before anything is;
sending goes through `deliveries.engine.replay`, which skips every event the webhook already
has a delivery of, so pressing the button twice sends nothing twice.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from accounts.access import merchant_for_user
from deliveries import engine
from endpoints.models import Endpoint
from lib.text import counted

# The periods offered, as (value, label); those longer than the retention window are left out.
PERIODS = [("1", "the last 24 hours"), ("7", "the last 7 days"), ("30", "the last 30 days")]


def _get_endpoint_for_user(request: HttpRequest, public_id: str) -> Endpoint:
    return get_object_or_404(
        Endpoint.objects.select_related("merchant"),
        public_id=public_id,
        merchant=merchant_for_user(request),
    )


def _periods(endpoint: Endpoint) -> list[tuple[str, str]]:
    kept = endpoint.merchant.retention_days or settings.RETENTION_DAYS
    return [(days, label) for days, label in PERIODS if int(days) <= kept]


def _days(data: QueryDict, endpoint: Endpoint) -> str | None:
    value = data.get("days", "1")
    return value if value in dict(_periods(endpoint)) else None


@login_required
@require_safe
def confirm_past_events(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _get_endpoint_for_user(request, public_id)
    days = _days(request.GET, endpoint)
    if days is None:
        messages.error(request, "Choose one of the periods offered.")
        return redirect("confirm_past_events", endpoint.public_id)
    since = timezone.now() - timedelta(days=int(days))
    count = engine.count_missing(endpoint, since)
    return render(
        request,
        "webhooks/past_events.html",
        {
            "endpoint": endpoint,
            "periods": _periods(endpoint),
            "days": days,
            "count": count,
            "count_text": counted(count, "past event", "past events"),
        },
    )


@login_required
@require_POST
def send_past_events(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _get_endpoint_for_user(request, public_id)
    days = _days(request.POST, endpoint)
    if days is None:
        messages.error(request, "Choose one of the periods offered: nothing was sent.")
        return redirect("confirm_past_events", endpoint.public_id)
    if not endpoint.is_enabled:
        messages.error(request, "This webhook is disabled: enable it to send past events.")
        return redirect("webhook", endpoint.public_id)
    count = engine.replay(endpoint, timezone.now() - timedelta(days=int(days)))
    if count:
        messages.success(
            request,
            f"Sending {counted(count, 'past event', 'past events')} in the order they "
            "happened; they appear under Deliveries as they go.",
        )
    else:
        messages.info(request, "This webhook already has every past event: nothing to send.")
    return redirect("webhook", endpoint.public_id)
