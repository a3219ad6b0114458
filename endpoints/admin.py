"""The staff side: every merchant's endpoints, built for triage."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html

from accounts.models import Merchant
from catalogue.models import Category, EventType
from catalogue.seed import PLATFORM_CATEGORY
from deliveries import observability
from deliveries.engine import disable_endpoint, retry_failed
from endpoints.models import Endpoint, OperatorWebhook
from endpoints.validators import validate_webhook_url
from lib.custom_headers import mask_value
from lib.masking import mask_url_secrets
from lib.text import counted


def short(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _short_time(value: datetime | None) -> str:
    if value is None:
        return "\N{EN DASH}"
    return format_html(
        '<span class="nowrap">{}</span>', value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    )


class PausedFilter(admin.SimpleListFilter):
    """The circuit breaker in the dashboard's words: paused or not."""

    title = "paused"
    parameter_name = "paused"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Paused"), ("no", "Not paused")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> QuerySet[Endpoint]:
        paused = Q(is_enabled=True, breaker_state=Endpoint.BreakerState.OPEN)
        if self.value() == "yes":
            return queryset.filter(paused)
        if self.value() == "no":
            return queryset.exclude(paused)
        return queryset


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    # Narrow columns that fit 1280 px beside the filters: with full URLs, merchant names and
    # a column each for enabled, reason, log mode and breaker the list was 1,819 px wide.
    # Category and log mode are filters; the status column says enabled, paused or why not.
    list_display = [
        "short_url",
        "merchant_name",
        "status",
        "failing",
        "created",
    ]
    list_filter = [
        "is_enabled",
        "disabled_reason",
        PausedFilter,
        "merchant",
        "category",
        "log_mode",
    ]
    list_select_related = ["merchant", "category"]

    class Media:
        css = {"all": ["admin_status.css"]}

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
        "in_flight_allowed",
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
        "concurrency_limit",
    ]

    @admin.display(description="Paused")
    def breaker(self, obj: Endpoint) -> str:
        if obj.allowed_in_flight < obj.max_in_flight:
            return f"{obj.pause_label()} · {self.in_flight_allowed(obj)}"
        return obj.pause_label()

    @admin.display(description="URL", ordering="url")
    def short_url(self, obj: Endpoint) -> str:
        url = mask_url_secrets(obj.url)  # query secrets and catch tokens too
        return format_html('<span title="{}">{}</span>', url, short(url, 36))

    @admin.display(description="Merchant", ordering="merchant__name")
    def merchant_name(self, obj: Endpoint) -> str:
        name = obj.merchant.name
        return format_html('<span title="{}">{}</span>', name, short(name, 24))

    @admin.display(description="Status", ordering="is_enabled")
    def status(self, obj: Endpoint) -> str:
        """Enabled, paused until a time, or disabled and why: the dashboard's words."""
        if obj.is_paused:
            label = (
                f"Paused: we try again at {obj.breaker_probe_at:%H:%M} UTC"
                if obj.breaker_is_parked
                else "Paused: trying one delivery now"
            )
            return format_html('<strong class="delivery-status-held">{}</strong>', label)
        if obj.is_enabled:
            return "Enabled"
        return obj.get_disabled_reason_display() or "Disabled"

    @admin.display(description="Failing since (UTC)", ordering="failing_since")
    def failing(self, obj: Endpoint) -> str:
        return _short_time(obj.failing_since)

    @admin.display(description="Created (UTC)", ordering="created_at")
    def created(self, obj: Endpoint) -> str:
        return _short_time(obj.created_at)

    @admin.display(description="In flight allowed")
    def in_flight_allowed(self, obj: Endpoint) -> str:
        if obj.allowed_in_flight < obj.max_in_flight:
            return f"{obj.allowed_in_flight} of {obj.max_in_flight} (cut after timeouts)"
        return f"{obj.max_in_flight} (its maximum)"

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
        # Query secrets and an inspector's catch token too, not only a password.
        return mask_url_secrets(obj.url)

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


class OperatorWebhookForm(forms.ModelForm):
    class Meta:
        model = OperatorWebhook
        fields = ["url", "description", "event_types"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        validate_webhook_url(url)
        return url


@admin.register(OperatorWebhook)
class OperatorWebhookAdmin(admin.ModelAdmin):
    """Where operational events go (also `POST /api/v1/operator-webhooks`). The signing
    secret is shown once, in the message after adding."""

    form = OperatorWebhookForm
    list_display = ["masked_url", "public_id", "is_enabled", "disabled_reason", "created_at"]
    filter_horizontal = ["event_types"]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "event_types":
            kwargs["queryset"] = EventType.objects.filter(category__slug=PLATFORM_CATEGORY)
            kwargs["help_text"] = "None picked means every operational event."
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.merchant = Merchant.objects.platform()
            obj.category = Category.objects.filter(slug=PLATFORM_CATEGORY).first()
        super().save_model(request, obj, form, change)
        if not change:
            messages.warning(request, f"The signing secret, shown this once: {obj.secret}")
