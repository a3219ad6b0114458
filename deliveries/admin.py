"""Events, deliveries and attempts for staff: read-only logs with filters and bulk retry."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from deliveries import engine
from deliveries.http import mask_url
from deliveries.models import Delivery, DeliveryAttempt, Event


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["public_id", "event_type", "merchant", "sequence", "created_at"]
    list_filter = ["event_type__category", "event_type", "merchant"]
    list_select_related = ["event_type", "merchant"]
    search_fields = ["public_id", "merchant__name", "merchant__public_id"]
    show_full_result_count = False
    fields = ["public_id", "merchant", "event_type", "sequence", "created_at", "payload"]
    readonly_fields = fields
    actions = ["resend_events"]

    @admin.display(description="Data")
    def payload(self, obj: Event) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.data, indent=2, ensure_ascii=False))

    @admin.action(description="Resend selected events")
    def resend_events(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        total = sum(event.resend() for event in queryset)
        self.message_user(request, f"Scheduled {total} deliveries again.", messages.SUCCESS)


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "created_at", "response_status", "duration_ms", "error"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "public_id",
        "event",
        "target",
        "merchant",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "merchant", "event__event_type", "last_status_code"]
    list_select_related = ["event__event_type", "endpoint", "merchant"]
    # Never the URL: searching inside it would answer whether a password is in it.
    search_fields = ["public_id", "event__public_id", "endpoint__public_id"]
    show_full_result_count = False
    inlines = [AttemptInline]
    # A one-off URL may carry user:password@; staff see it masked (`target`), like endpoints.
    exclude = ["claimed_by", "url"]
    readonly_fields = ["target"]
    actions = ["retry_deliveries"]

    @admin.display(description="Sent to")
    def target(self, obj: Delivery) -> str:
        return mask_url(obj.target_url)

    @admin.action(description="Retry selected failed deliveries")
    def retry_deliveries(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = engine.retry_now(queryset)
        self.message_user(request, f"Scheduled {count} deliveries again.", messages.SUCCESS)


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
    show_full_result_count = False
