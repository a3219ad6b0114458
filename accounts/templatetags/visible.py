"""`{{ name|visible }}`: names and descriptions merchants typed, with characters that would
change how they display (RTL overrides, zero-width characters) shown as [U+XXXX]."""

from __future__ import annotations

from typing import Any

from django import template

from lib import text

register = template.Library()


@register.filter(name="visible")
def visible(value: Any) -> str:
    return text.visible(str(value)) if value is not None else ""
