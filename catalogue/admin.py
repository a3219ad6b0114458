"""Staff edit the event catalogue here (new event types need no deploy)."""

from __future__ import annotations

from django.contrib import admin

from catalogue.models import Category, EventType


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "position"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(EventType)
class EventTypeAdmin(admin.ModelAdmin):
    list_display = ["name", "category", "source", "is_active"]
    list_filter = ["category", "source", "is_active"]
    search_fields = ["name", "description"]
