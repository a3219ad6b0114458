"""Events, deliveries and attempts for staff: read-only logs with filters and bulk retry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from deliveries import engine, states
from deliveries.engine import resend
from deliveries.models import Delivery, DeliveryAttempt, Event
from lib import ordering
from lib.masking import mask_url_secrets
from lib.text import deliveries, escape_surrogates


def utc_seconds(value: datetime | None) -> str:
    """Seconds and the zone: three attempts a few seconds apart must not look simultaneous."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "\N{EN DASH}"


def short(text: str, length: int = 48) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["public_id", "event_type", "merchant", "sequence", "created"]
    list_filter = ["event_type__category", "event_type", "merchant"]
    list_select_related = ["event_type", "merchant"]
    # The type's name too: staff search "receipts.update" first.
    search_fields = ["public_id", "event_type__name", "merchant__name", "merchant__public_id"]
    show_full_result_count = False
    fields = ["public_id", "merchant", "event_type", "sequence", "created_at", "payload"]
    readonly_fields = fields
    actions = ["resend_events"]

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: Event) -> str:
        return utc_seconds(obj.created_at)

    @admin.display(description="Data")
    def payload(self, obj: Event) -> str:
        # Data stored before lone surrogates were refused may hold one: shown as its escape.
        text = escape_surrogates(json.dumps(obj.data, indent=2, ensure_ascii=False))
        return format_html("<pre>{}</pre>", text)

    @admin.action(description="Resend selected events")
    def resend_events(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        total = sum(resend(event) for event in queryset)
        self.message_user(request, f"Scheduled {deliveries(total)} again.", messages.SUCCESS)


class StateFilter(admin.SimpleListFilter):
    """Status in the dashboard's words: a pending delivery is waiting, retrying or held."""

    title = "status"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return states.choices()

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        value = self.value()
        return queryset.filter(states.FILTERS[value]) if value in states.FILTERS else queryset


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "when", "response_status", "duration_ms", "error"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="When")
    def when(self, obj: DeliveryAttempt) -> str:
        return utc_seconds(obj.created_at)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    # Narrow columns, status first: with the event's and URL's full text the list was 2,395 px
    # wide and the status off-screen even at 1920 px; with full ids, merchant names and times,
    # 1,257 px where 1280 px screens have 930.
    list_display = [
        "delivery_id",
        "status_badge",
        "attempts",
        "code",
        "event_type",
        "endpoint_url",
        "merchant_name",
        "created",
    ]
    list_filter = [StateFilter, "merchant", "event__event_type", "last_status_code"]
    list_select_related = ["event__event_type", "endpoint", "merchant"]
    # Never the URL: searching inside it would answer whether a password is in it.
    search_fields = ["public_id", "event__public_id", "endpoint__public_id"]
    show_full_result_count = False
    inlines = [AttemptInline]
    # A one-off URL may carry user:password@; staff see it masked (`target`), like endpoints.
    exclude = ["claimed_by", "url"]
    readonly_fields = ["target", "ordered_by", "waits_for"]
    actions = ["retry_deliveries"]
    change_form_template = "admin/deliveries/delivery/change_form.html"

    class Media:
        css = {"all": ["admin_status.css"]}

    @admin.display(description="Delivery", ordering="id")
    def delivery_id(self, obj: Delivery) -> str:
        # The id's start tells deliveries apart on a page; the whole id is in the title.
        return format_html('<span title="{}">{}</span>', obj.public_id, short(obj.public_id, 14))

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Delivery) -> str:
        # A class, not a style attribute: the Content-Security-Policy allows no inline style.
        return format_html(
            '<strong class="delivery-status-{}">{}</strong>', obj.state, obj.state_label
        )

    @admin.display(description="Code", ordering="last_status_code")
    def code(self, obj: Delivery) -> str:
        # A timeout is recorded as 408 (the API's convention); staff read what happened.
        return obj.no_answer or str(obj.last_status_code or "\N{EN DASH}")

    @admin.display(description="Merchant", ordering="merchant__name")
    def merchant_name(self, obj: Delivery) -> str:
        name = obj.merchant.name
        return format_html('<span title="{}">{}</span>', name, short(name, 20))

    @admin.display(description="Event type", ordering="event__event_type__name")
    def event_type(self, obj: Delivery) -> str:
        return obj.event.event_type.name

    @admin.display(description="URL")
    def endpoint_url(self, obj: Delivery) -> str:
        url = mask_url_secrets(obj.target_url)  # a one-off URL may carry credentials too
        return format_html('<span title="{}">{}</span>', url, short(url, 28))

    @admin.display(description="Created (UTC)", ordering="created_at")
    def created(self, obj: Delivery) -> str:
        # Seconds, without the zone (in the header): the list fits 1280 px.
        stamp = obj.created_at.astimezone(UTC).strftime("%m-%d %H:%M:%S")
        return format_html(
            '<span class="nowrap" title="{}">{}</span>', utc_seconds(obj.created_at), stamp
        )

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj: Delivery) -> str:
        return utc_seconds(obj.next_attempt_at)

    @admin.display(description="Sent to")
    def target(self, obj: Delivery) -> str:
        return mask_url_secrets(obj.target_url)

    @admin.display(description="Ordering value")
    def ordered_by(self, obj: Delivery) -> str:
        if obj.ordering_value is None:
            return "Not ordered"
        return ordering.shown(obj.ordering_value)

    @admin.display(description="Waiting for")
    def waits_for(self, obj: Delivery) -> str:
        """Ordered delivery: the delivery of the same value it goes after, if unfinished."""
        public_id = Delivery.objects.waiting_for_ids([obj]).get(obj.pk)
        if public_id is None:
            return "Nothing"
        changelist = reverse("admin:deliveries_delivery_changelist")
        return format_html('<a href="{}?q={}">{}</a>', changelist, public_id, public_id)

    @admin.action(description="Retry selected failed deliveries")
    def retry_deliveries(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = engine.retry_now(queryset)
        self.message_user(request, f"Scheduled {deliveries(count)} again.", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        retry = path(
            "<path:object_id>/retry/",
            self.admin_site.admin_view(require_POST(self.retry_view)),
            name="deliveries_delivery_retry",
        )
        return [retry, *super().get_urls()]

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The Retry button of one delivery's page."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        delivery = get_object_or_404(Delivery.objects.select_related("endpoint"), pk=object_id)
        if delivery.endpoint_id and not delivery.endpoint.is_enabled:
            self.message_user(request, "Its endpoint is disabled: enable it first.", messages.ERROR)
        elif engine.retry_now(Delivery.objects.filter(pk=delivery.pk)):
            self.message_user(request, f"{delivery} will be retried now.", messages.SUCCESS)
        else:
            self.message_user(
                request,
                f"Only failed or cancelled deliveries can be retried; this one is "
                f"{delivery.state_label.lower()}.",
                messages.WARNING,
            )
        return HttpResponseRedirect(reverse("admin:deliveries_delivery_change", args=[object_id]))


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "delivery",
        "number",
        "response_status",
        "succeeded",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["succeeded", "response_status"]
    list_select_related = ["delivery"]
    search_fields = ["delivery__public_id"]
    # The logged URL has its password masked already; its query and catch token not.
    exclude = ["url"]
    readonly_fields = ["sent_to"]

    @admin.display(description="URL")
    def sent_to(self, obj: DeliveryAttempt) -> str:
        return mask_url_secrets(obj.url)

    show_full_result_count = False
