"""What event data may hold: JSON every database stores and every receiver can be sent.

Pure checks, shared by the API's serializers and the function that stores events.
"""

from __future__ import annotations

from typing import Any

from lib.text import has_surrogate


class InvalidEventData(ValueError):
    """Data no database can store as JSON (PostgreSQL refuses U+0000 in jsonb)."""


def contains_nul(value: Any) -> bool:
    """Whether any string or key inside a JSON value holds U+0000."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


SURROGATE_MESSAGE = (
    "Must not contain a lone surrogate (\\ud800 to \\udfff without its pair) in any string or key."
)


def contains_surrogate(value: Any) -> bool:
    """Whether any string or key inside a JSON value holds a lone surrogate.

    JSON text may escape one ("\\ud83d" without its pair); UTF-8 cannot encode it, so an
    event holding one could be stored but not shown, answered or sent.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if has_surrogate(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def check_event_data(data: Any) -> None:
    """Raise InvalidEventData when a string or key in `data` holds U+0000 or a lone surrogate."""
    if contains_nul(data):
        raise InvalidEventData("Event data must not contain the NUL character (U+0000).")
    if contains_surrogate(data):
        raise InvalidEventData(
            f"Event data: {SURROGATE_MESSAGE[:1].lower()}{SURROGATE_MESSAGE[1:]}"
        )
