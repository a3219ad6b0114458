"""The staff side: every merchant's endpoints, built for triage."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from endpoints.models import Category, Endpoint, EventType, Merchant, User


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "event_sequence", "retention_days", "created_at"]
    search_fields = ["name", "public_id"]
    readonly_fields = ["public_id", "event_sequence", "created_at"]
    exclude = ["webhook_secret"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "email", "merchant", "is_staff", "is_active"]
    list_filter = ["is_staff", "is_active", "merchant"]
    list_select_related = ["merchant"]
    fieldsets = (*BaseUserAdmin.fieldsets, ("Merchant", {"fields": ["merchant"]}))
    add_fieldsets = (*BaseUserAdmin.add_fieldsets, ("Merchant", {"fields": ["merchant"]}))


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "position"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(EventType)
class EventTypeAdmin(admin.ModelAdmin):
    list_display = ["name", "category", "source", "is_active"]
    list_filter = ["category", "source", "is_active"]
    search_fields = ["name", "description"]


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = [
        "masked_url",
        "merchant",
        "category",
        "is_enabled",
        "disabled_reason",
        "log_mode",
        "failing_since",
        "created_at",
    ]
    list_filter = ["is_enabled", "disabled_reason", "merchant", "category", "log_mode"]
    list_select_related = ["merchant", "category"]
    search_fields = ["url", "description", "public_id", "merchant__name", "merchant__public_id"]
    filter_horizontal = ["event_types"]
    readonly_fields = [
        "public_id",
        "masked_url",
        "merchant",
        "disabled_at",
        "failing_since",
        "failure_warning_sent_at",
        "created_at",
        "updated_at",
    ]
    # Staff triage endpoints; they never see secrets or basic-auth passwords.
    exclude = ["url", "secret", "previous_secret", "previous_secret_expires_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    actions = ["disable_endpoints", "enable_endpoints", "retry_failed_deliveries"]

    @admin.display(description="URL")
    def masked_url(self, obj: Endpoint) -> str:
        return obj.masked_url

    @admin.action(description="Disable selected endpoints")
    def disable_endpoints(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = 0
        for endpoint in queryset.filter(is_enabled=True):
            endpoint.disable(Endpoint.DisabledReason.STAFF, f"Disabled by {request.user}.")
            count += 1
        self.message_user(request, f"Disabled {count} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Enable selected endpoints")
    def enable_endpoints(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = 0
        for endpoint in queryset.filter(is_enabled=False):
            endpoint.enable()
            count += 1
        self.message_user(request, f"Enabled {count} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Retry failed deliveries of selected endpoints")
    def retry_failed_deliveries(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        total = sum(endpoint.retry_failed() for endpoint in queryset)
        self.message_user(request, f"Scheduled {total} failed deliveries again.", messages.SUCCESS)
