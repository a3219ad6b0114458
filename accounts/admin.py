"""The staff side of merchants, their users and their API credentials."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.validators import MinValueValidator
from django.db.models import Field, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import ApiKey, Merchant, OAuthClient, OperatorKey, User


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

    search_fields = ["name", "public_id", "external_id"]
    readonly_fields = ["public_id", "event_sequence", "created_at"]
    exclude = ["webhook_secret"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "email", "merchant", "is_staff", "is_active"]
    list_filter = ["is_staff", "is_active", "merchant"]
    list_select_related = ["merchant"]
    fieldsets = (*BaseUserAdmin.fieldsets, ("Merchant", {"fields": ["merchant"]}))
    add_fieldsets = (*BaseUserAdmin.add_fieldsets, ("Merchant", {"fields": ["merchant"]}))


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


def _unregister_toolkit_admin() -> None:
    """django-oauth-toolkit's own admin let staff edit an application's grant types and
    redirect URIs and read tokens; staff see and delete clients through OAuthClientAdmin.
    The toolkit's app comes before this one in INSTALLED_APPS, so its admin is loaded."""
    from oauth2_provider.models import (
        get_access_token_model,
        get_application_model,
        get_grant_model,
        get_id_token_model,
        get_refresh_token_model,
    )

    for get_model in (
        get_application_model,
        get_access_token_model,
        get_refresh_token_model,
        get_grant_model,
        get_id_token_model,
    ):
        model = get_model()
        if admin.site.is_registered(model):
            admin.site.unregister(model)


_unregister_toolkit_admin()


@admin.register(OperatorKey)
class OperatorKeyAdmin(admin.ModelAdmin):
    """The POS platform's keys: added here (shown once, in a message), revoked, never shown."""

    list_display = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["name", "prefix"]
    fields = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: OperatorKey | None = None
    ) -> list[str]:
        if obj is None:
            return ["prefix", "created_at", "last_used_at", "revoked_at"]
        return ["name", "prefix", "created_at", "last_used_at"]

    def save_model(
        self, request: HttpRequest, obj: OperatorKey, form: ModelForm, change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued, raw = OperatorKey.issue(obj.name)
        obj.pk, obj.prefix, obj.key_hash = issued.pk, issued.prefix, issued.key_hash
        messages.warning(
            request,
            f"The operator key, shown this once (only its hash is kept): {raw}",
        )

    @admin.action(description="Revoke selected operator keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[OperatorKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        messages.success(request, f"Revoked {count} operator key(s).")
