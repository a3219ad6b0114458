"""The staff side: every merchant's endpoints, built for triage."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied
from django.core.validators import MinValueValidator
from django.db.models import Field, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from deliveries import observability
from deliveries.engine import disable_endpoint, retry_failed
from endpoints.models import (
    ApiKey,
    Category,
    Endpoint,
    EventType,
    Inspector,
    LoyaltyApp,
    LoyaltyCall,
    Merchant,
    OAuthClient,
    User,
)
from webhooks_project.text import counted


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "event_sequence", "retention_days", "created_at"]
    list_editable = ["retention_days"]

    def formfield_for_dbfield(self, db_field: Field, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "retention_days" and field is not None:
            # 0 days would prune a merchant's logs the moment deliveries end.
            field.validators.append(MinValueValidator(1))
            field.widget.attrs["min"] = 1
            field.help_text = (
                f"Days to keep delivery logs; empty means the default ({settings.RETENTION_DAYS})."
            )
        if db_field.name.startswith("max_") and field is not None:
            # Staff raise a merchant's limits here; showing the default says what empty means.
            default = getattr(settings, f"MERCHANT_{db_field.name.upper()}")
            field.help_text = f"{db_field.help_text.split(';')[0]}; empty means {default}."
        return field

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
        "breaker",
        "created_at",
    ]
    list_filter = [
        "is_enabled",
        "disabled_reason",
        "breaker_state",
        "merchant",
        "category",
        "log_mode",
    ]
    list_select_related = ["merchant", "category"]
    # Not the URL: searching inside it would tell whether a guessed password is in it.
    search_fields = ["description", "public_id", "merchant__name", "merchant__public_id"]
    filter_horizontal = ["event_types"]
    readonly_fields = [
        "public_id",
        "masked_url",
        "merchant",
        "disabled_at",
        "failing_since",
        "failure_warning_sent_at",
        "breaker",
        "breaker_failures",
        "created_at",
        "updated_at",
    ]
    # Staff triage endpoints; they never see secrets or basic-auth passwords. The breaker is
    # the engine's to move; staff see it (and enabling an endpoint closes it).
    exclude = [
        "url",
        "secret",
        "previous_secret",
        "previous_secret_expires_at",
        "breaker_state",
        "breaker_trips",
        "breaker_probe_at",
    ]

    @admin.display(description="Circuit breaker")
    def breaker(self, obj: Endpoint) -> str:
        return obj.breaker_label()

    def save_model(self, request: HttpRequest, obj: Endpoint, form: Any, change: bool) -> None:
        """Flipping "is enabled" in the form disables or enables the way the actions do."""
        flipped = change and "is_enabled" in form.changed_data
        wanted = obj.is_enabled
        if flipped:
            obj.is_enabled = not wanted  # saved as it was; the engine flips it below
        super().save_model(request, obj, form, change)
        if flipped and wanted:
            obj.enable()
        elif flipped:
            disable_endpoint(obj, Endpoint.DisabledReason.STAFF, f"Disabled by {request.user}.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        failing = path(
            "failing/",
            self.admin_site.admin_view(self.failing_view),
            name="endpoints_endpoint_failing",
        )
        return [failing, *super().get_urls()]

    def failing_view(self, request: HttpRequest) -> HttpResponse:
        """The endpoints failing most in the last 24 hours: where staff start triage."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        hours = 24
        context = {
            **self.admin_site.each_context(request),
            "title": f"Endpoints failing most in the last {hours} hours",
            "opts": self.model._meta,
            "hours": hours,
            "rows": observability.failing_endpoints(hours=hours),
        }
        return TemplateResponse(request, "admin/endpoints/endpoint/failing.html", context)

    actions = ["disable_endpoints", "enable_endpoints", "retry_failed_deliveries"]

    @admin.display(description="URL")
    def masked_url(self, obj: Endpoint) -> str:
        return obj.masked_url

    @admin.action(description="Disable selected endpoints")
    def disable_endpoints(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = 0
        for endpoint in queryset.filter(is_enabled=True):
            disable_endpoint(
                endpoint, Endpoint.DisabledReason.STAFF, f"Disabled by {request.user}."
            )
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
        total = sum(retry_failed(endpoint) for endpoint in queryset)
        self.message_user(
            request,
            f"Scheduled {counted(total, 'failed delivery', 'failed deliveries')} again.",
            messages.SUCCESS,
        )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "merchant", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["merchant"]
    list_select_related = ["merchant"]
    search_fields = ["name", "prefix", "merchant__name"]
    # Only the hash is stored; staff see the prefix and can revoke, never the key.
    readonly_fields = ["merchant", "name", "prefix", "created_at", "created_by", "last_used_at"]
    exclude = ["key_hash"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(OAuthClient)
class OAuthClientAdmin(admin.ModelAdmin):
    list_display = ["name", "merchant", "client_id", "created_at"]
    list_filter = ["merchant"]
    list_select_related = ["merchant", "application"]
    search_fields = ["name", "merchant__name", "application__client_id"]
    # The secret is stored hashed by the toolkit; staff can only see and delete clients.
    readonly_fields = ["merchant", "name", "client_id", "created_at", "created_by"]
    exclude = ["application"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Inspector)
class InspectorAdmin(admin.ModelAdmin):
    list_display = ["__str__", "merchant", "created_at"]
    list_filter = ["merchant"]
    list_select_related = ["merchant"]
    exclude = ["token"]


@admin.register(LoyaltyApp)
class LoyaltyAppAdmin(admin.ModelAdmin):
    list_display = ["merchant", "masked", "log_mode"]
    list_select_related = ["merchant"]
    exclude = ["url", "secret"]
    readonly_fields = ["masked"]

    @admin.display(description="URL")
    def masked(self, obj: LoyaltyApp) -> str:
        from deliveries.http import mask_url

        return mask_url(obj.url)


@admin.register(LoyaltyCall)
class LoyaltyCallAdmin(admin.ModelAdmin):
    list_display = ["__str__", "created_at"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
