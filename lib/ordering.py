"""Ordered delivery per key: which field of an event's data orders a webhook's deliveries.

A webhook may name a dotted path of the event's data (`"code"`, `"invoice.number"`, an array
element as `"lines.0.sku"`). Its deliveries whose events share that field's value go one at a
time, in the order the events were emitted; events without the field are not ordered.

Pure rules, shared by the API, the dashboard form, the model and the engine: validating a
key, and reading the value a delivery is ordered by. No model, no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

MAX_KEY_LENGTH = 200
MAX_SEGMENTS = 10
# A stored value longer than this is kept as its SHA-256 (values are only compared).
MAX_VALUE_LENGTH = 200

_SEGMENT = re.compile(r"[^.$\s]+")


class OrderingKeyError(ValueError):
    """An ordering key that is not a usable dotted path; the message says why."""


def clean_key(key: Any) -> str | None:
    """The key as stored: None for none ("" and null), or a validated dotted path.

    Raises:
        OrderingKeyError: naming what is wrong with it.
    """
    if key is None or key == "":
        return None
    if not isinstance(key, str):
        raise OrderingKeyError('Must be a dotted path of the event\'s data, such as "code".')
    if len(key) > MAX_KEY_LENGTH:
        raise OrderingKeyError(f"Must be at most {MAX_KEY_LENGTH} characters.")
    segments = key.split(".")
    if len(segments) > MAX_SEGMENTS:
        raise OrderingKeyError(f"Must have at most {MAX_SEGMENTS} parts.")
    for segment in segments:
        if not _SEGMENT.fullmatch(segment):
            raise OrderingKeyError(
                f'"{key}" is not a dotted path: each part between dots must be a field name '
                "or an array index, without spaces or $."
            )
    return key


def value_of(data: Any, key: str | None) -> str | None:
    """The value an event's deliveries are ordered by: None when not ordered.

    The field's JSON text (so 7 and "7" are different keys), or its SHA-256 when long. A
    missing field, or null, leaves the event unordered.
    """
    if not key:
        return None
    value = data
    for segment in key.split("."):
        if isinstance(value, dict):
            if segment not in value:
                return None
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return None
    if value is None:
        return None
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(text) > MAX_VALUE_LENGTH:
        return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return text


def shown(value: str | None) -> str:
    """A stored value as a person reads it: "P-1" rather than its JSON text."""
    if value is None:
        return ""
    if value.startswith("sha256:"):
        return "(a long value)"
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value
