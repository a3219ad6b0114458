"""The event catalogue: categories and the event types merchants subscribe to."""

from __future__ import annotations

from django.db import models


class Category(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        # The table kept its name when the model moved here from the endpoints app.
        db_table = "endpoints_category"
        ordering = ["position", "name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class EventType(models.Model):
    name = models.CharField(max_length=100, unique=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="event_types")
    description = models.CharField(max_length=300, blank=True)
    source = models.CharField(max_length=50, blank=True, help_text="Where the type comes from.")
    sample = models.JSONField(default=dict, blank=True, help_text="A sample `data` payload.")
    is_active = models.BooleanField(default=True)

    class Meta:
        # The table kept its name when the model moved here from the endpoints app.
        db_table = "endpoints_eventtype"
        ordering = ["category__position", "name"]

    def __str__(self) -> str:
        return self.name
