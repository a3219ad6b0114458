"""Times as operators type them: "24h", "7d", "30m" ago, or an ISO date or date-time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

_RELATIVE = re.compile(r"^(\d+)\s*([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(raw: str, now: datetime | None = None) -> datetime:
    """ "24h", "7d", "30m", an ISO date or an ISO date-time (UTC unless it says otherwise)."""
    now = now or timezone.now()
    match = _RELATIVE.match(raw.strip().lower())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    moment = parse_datetime(raw)
    if moment is None:
        day = parse_date(raw)
        if day is not None:
            moment = datetime(day.year, day.month, day.day)
    if moment is None:
        raise ValueError(f"expected 24h, 7d, 30m or an ISO date, got {raw!r}.")
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    return moment
