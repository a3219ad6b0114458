"""The staff side: every merchant's endpoints, built for triage."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from deliveries import observability
from deliveries.engine import disable_endpoint, retry_failed
from endpoints.models import Endpoint
from lib.custom_headers import mask_value
from lib.text import counted


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
        "payload_filter",
        "masked_headers",
        "created_at",
        "updated_at",
    ]
    # Staff triage endpoints; they never see secrets or basic-auth passwords. The breaker is
    # the engine's to move; staff see it (and enabling an endpoint closes it).
    exclude = [
        "url",
        "secret",
        "previous_secret",
        # Read-only for staff (shown below): the merchant's own delivery controls.
        "filter",
        "custom_headers",
        "previous_secret_expires_at",
        "breaker_state",
        "breaker_trips",
        "breaker_probe_at",
    ]

    @admin.display(description="Circuit breaker")
    def breaker(self, obj: Endpoint) -> str:
        return obj.breaker_label()

    @admin.display(description="Filter")
    def payload_filter(self, obj: Endpoint) -> str:
        return json.dumps(obj.filter, ensure_ascii=False) if obj.filter else "None: every event"

    @admin.display(description="Custom headers")
    def masked_headers(self, obj: Endpoint) -> str:
        # Names only, values masked: they are usually the receiver's credentials.
        headers = obj.headers
        return ", ".join(f"{n}: {mask_value(v)}" for n, v in headers.items()) or "None"

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
