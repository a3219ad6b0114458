"""Counts in messages: "1 delivery", "2 deliveries", never "1 deliveries"."""

from __future__ import annotations


def counted(count: int, singular: str, plural: str) -> str:
    return f"{count:,} {singular if count == 1 else plural}"


def deliveries(count: int) -> str:
    return counted(count, "delivery", "deliveries")
