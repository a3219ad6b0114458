"""The event catalogue page: every active event type with its sample payloads, and the
snippets that show a receiver how to verify our signatures."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from accounts.access import merchant_for_user
from catalogue import samples
from catalogue.models import Category, EventType


@login_required
@require_safe
def catalogue(request: HttpRequest) -> HttpResponse:
    merchant = merchant_for_user(request)
    active = EventType.objects.filter(is_active=True).order_by("name")
    categories = [
        category
        for category in Category.objects.prefetch_related(
            Prefetch("event_types", queryset=active, to_attr="types")
        )
        if category.types
    ]
    for category in categories:
        for event_type in category.types:
            event_type.sample_body = samples.sample_body(event_type, merchant)
            event_type.sample_flat_body = samples.sample_flat_body(event_type, merchant)
    return render(
        request,
        "catalogue/page.html",
        {"categories": categories, "snippets": samples.SNIPPETS},
    )
