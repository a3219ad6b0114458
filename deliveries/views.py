"""The dashboard's delivery log and Events pages (Smart Router's Events tab)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Prefetch, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from accounts.access import merchant_for_user
from catalogue.models import EventType
from deliveries import engine, states
from deliveries.models import Delivery, DeliveryAttempt, Event
from endpoints.models import Endpoint
from lib.http import mask_url
from lib.pages import get_for_user_or_404, keyset_page, pretty_json, query_without, redirect_back
from lib.text import escape_surrogates

ATTEMPTS_PAGE_SIZE = 20


# --- ownership helpers: one per object kind ------------------------------------------------


def _get_delivery_for_user(request: HttpRequest, public_id: str) -> Delivery:
    return get_for_user_or_404(
        Delivery.objects.select_related("endpoint", "event__event_type"),
        "delivery",
        public_id=public_id,
        merchant=merchant_for_user(request),
    )


def _get_event_for_user(request: HttpRequest, public_id: str) -> Event:
    return get_for_user_or_404(
        Event.objects.select_related("event_type", "merchant"),
        "event",
        public_id=public_id,
        merchant=merchant_for_user(request),
    )


# --- deliveries -------------------------------------------------------------------------------


@login_required
@require_safe
def delivery(request: HttpRequest, public_id: str) -> HttpResponse:
    delivery = _get_delivery_for_user(request, public_id)
    states.note_ordering([delivery])
    page = keyset_page(delivery.attempt_log.all(), request.GET, size=ATTEMPTS_PAGE_SIZE)
    for attempt in page.items:
        attempt.request_body_pretty = pretty_json(attempt.request_body)
        attempt.response_body_pretty = pretty_json(attempt.response_body)
    return render(
        request,
        "webhooks/delivery.html",
        {
            "delivery": delivery,
            "endpoint": delivery.endpoint,
            "masked_url": mask_url(delivery.target_url),
            "page": page,
        },
    )


@login_required
@require_POST
def retry_delivery(request: HttpRequest, public_id: str) -> HttpResponse:
    delivery = _get_delivery_for_user(request, public_id)
    # Ordered delivery: behind the deliveries of its value that wait now, unless the merchant
    # asks it to keep its place.
    keep_place = request.POST.get("keep_place") == "1"
    if delivery.endpoint is not None and not delivery.endpoint.is_enabled:
        messages.error(request, "This webhook is disabled: enable it to retry its deliveries.")
    elif engine.retry_now(Delivery.objects.filter(pk=delivery.pk), keep_place=keep_place):
        messages.success(request, _retried(delivery, keep_place))
    else:
        messages.info(request, "Only failed or cancelled deliveries can be retried.")
    return redirect_back(request, reverse("delivery", args=[delivery.public_id]))


def _retried(delivery: Delivery, keep_place: bool) -> str:
    said = f"Delivery {delivery.public_id} will be retried now"
    if delivery.ordering_value is None or delivery.endpoint is None:
        return said + "."
    key = delivery.endpoint.ordering_key or "ordering value"
    if keep_place:
        return said + f", in its own place among the deliveries of the same {key}."
    return said + f", after the deliveries of the same {key} that are waiting."


# --- events -----------------------------------------------------------------------------------


@login_required
@require_safe
def events(request: HttpRequest) -> HttpResponse:
    merchant = merchant_for_user(request)
    event_types = EventType.objects.select_related("category").order_by(
        "category__position", "name"
    )
    selected = request.GET.get("type", "")
    qs = Event.objects.for_merchant(merchant).select_related("event_type")
    if selected:
        # By id, so the (merchant, event_type, -id) index serves the page.
        type_id = EventType.objects.filter(name=selected).values_list("pk", flat=True).first()
        qs = qs.filter(event_type_id=type_id)
    page = keyset_page(qs, request.GET)
    # Per event, its deliveries by state, in the words of the webhook page and the admin.
    summary: dict[int, dict[str, int]] = defaultdict(dict)
    rows = (
        Delivery.objects.filter(event_id__in=[e.pk for e in page.items])
        .annotate(state=states.expression())
        .values_list("event_id", "state")
        .annotate(n=Count("id"))
        .order_by()
    )
    for event_id, state, n in rows:
        summary[event_id][state] = n
    for event in page.items:
        counts = summary.get(event.pk, {})
        event.delivery_states = [
            (state, state.label, counts[state]) for state in states.ORDER if counts.get(state)
        ]
    return render(
        request,
        "events/list.html",
        {
            "page": page,
            "event_types": event_types,
            "selected": selected,
            "filter_query": query_without(request, "before", "after"),
        },
    )


@login_required
@require_safe
def event(request: HttpRequest, public_id: str) -> HttpResponse:
    event = _get_event_for_user(request, public_id)
    # The retries listed per delivery leave the logged bodies out: they can be large, and
    # the delivery's own page shows them.
    attempts = DeliveryAttempt.objects.order_by("number").only(
        "id",
        "delivery_id",
        "number",
        "created_at",
        "response_status",
        "duration_ms",
        "error",
        "succeeded",
    )
    deliveries = list(
        event.deliveries.select_related("endpoint")
        .prefetch_related(Prefetch("attempt_log", queryset=attempts))
        .order_by("id")
    )
    states.note_ordering(deliveries)
    context: dict[str, Any] = {
        "event": event,
        "deliveries": deliveries,
        # Data stored before lone surrogates were refused may hold one: shown as its escape.
        "payload": escape_surrogates(json.dumps(event.envelope(), indent=2, ensure_ascii=False)),
        "plan": _resend_plan(event),
    }
    return render(request, "events/detail.html", context)


@dataclass
class ResendPlan:
    """Who a resend would reach, for the confirmation and for the resend itself."""

    unsucceeded: int  # failed or cancelled deliveries to enabled webhooks
    succeeded: int  # deliveries that already succeeded (sent again only when asked)
    new_subscribers: list[int]  # enabled webhooks that get this type now and never got it


def _resend_plan(event: Event) -> ResendPlan:
    to_enabled = event.deliveries.filter(Q(endpoint__isnull=True) | Q(endpoint__is_enabled=True))
    had = set(event.deliveries.values_list("endpoint_id", flat=True))
    current = Endpoint.objects.subscriber_ids(event.merchant, event.event_type)
    return ResendPlan(
        unsucceeded=to_enabled.filter(
            status__in=[Delivery.Status.FAILED, Delivery.Status.CANCELLED]
        ).count(),
        succeeded=to_enabled.filter(status=Delivery.Status.SUCCEEDED).count(),
        # Not the webhooks whose filter this event's data does not match: they never get it.
        new_subscribers=[
            e.pk
            for e in Endpoint.objects.filter(
                pk__in=[pk for pk in current if pk not in had]
            ).order_by("id")
            if e.wants(event.data)
        ],
    )


def _send_to_new_subscribers(event: Event, endpoint_ids: list[int]) -> int:
    """New deliveries to webhooks that did not exist or subscribe when the event happened."""
    with transaction.atomic():
        made = engine.create_deliveries(event, [(pk, "") for pk in endpoint_ids])
    return len(made)  # a webhook whose filter the event does not match gets none


@login_required
@require_safe
def confirm_resend_event(request: HttpRequest, public_id: str) -> HttpResponse:
    event = _get_event_for_user(request, public_id)
    return render(request, "events/resend.html", {"event": event, "plan": _resend_plan(event)})


@login_required
@require_POST
def resend_event(request: HttpRequest, public_id: str) -> HttpResponse:
    event = _get_event_for_user(request, public_id)
    plan = _resend_plan(event)
    # By default only to the webhooks that did not get it: one that already answered 2xx
    # gets a duplicate only when the merchant asks for it.
    include_succeeded = request.POST.get("include_succeeded") == "1"
    count = engine.retry_now(event.deliveries.all(), include_succeeded=include_succeeded)
    count += _send_to_new_subscribers(event, plan.new_subscribers)
    if count:
        noun = "webhook" if count == 1 else "webhooks"
        messages.success(request, f"Event {event.public_id} will be sent again to {count} {noun}.")
    elif event.deliveries.filter(status__in=["pending", "delivering"]).exists():
        messages.info(
            request, "Every delivery of this event is still waiting, retrying or being sent."
        )
    else:
        messages.info(request, "Nothing to resend: every webhook that gets this event has it.")
    return redirect("event", event.public_id)
