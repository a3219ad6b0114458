"""The staff side of merchant tooling: inspectors, loyalty apps and their call log."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from lib.masking import mask_url_secrets
from tooling.models import Inspector, LoyaltyApp, LoyaltyCall


@admin.register(Inspector)
class InspectorAdmin(admin.ModelAdmin):
    list_display = ["__str__", "merchant", "created_at"]
    list_filter = ["merchant"]
    list_select_related = ["merchant"]
    # The token is the catch URL's only credential.
    exclude = ["token"]


@admin.register(LoyaltyApp)
class LoyaltyAppAdmin(admin.ModelAdmin):
    list_display = ["merchant", "masked", "log_mode"]
    list_select_related = ["merchant"]
    exclude = ["url", "secret"]
    readonly_fields = ["masked"]

    @admin.display(description="URL")
    def masked(self, obj: LoyaltyApp) -> str:
        return mask_url_secrets(obj.url)


@admin.register(LoyaltyCall)
class LoyaltyCallAdmin(admin.ModelAdmin):
    list_display = ["__str__", "created_at"]
    show_full_result_count = False
    exclude = ["url"]
    readonly_fields = ["called"]

    @admin.display(description="URL")
    def called(self, obj: LoyaltyCall) -> str:
        return mask_url_secrets(obj.url)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
