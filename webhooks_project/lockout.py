"""Login lockout rules on top of django-axes.

- A username is locked after LOGIN_FAILURE_LIMIT failures from any addresses, so guessing
  from many addresses does not help.
- An address is locked after LOGIN_ADDRESS_FAILURE_LIMIT failures for any usernames, so one
  client cannot try a few passwords against every account.
- A successful log-in clears the failures of that username from that address only. Axes's
  own reset also cleared every failure from the address, whatever the username: an attacker
  could alternate guesses against a victim with log-ins to their own account and guess
  forever.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


class LockoutHandler(AxesDatabaseHandler):
    def get_failures(self, request: HttpRequest, credentials: dict | None = None) -> int:
        """The username's recent failures; the failure limit itself when the address is capped.

        Axes locks when this reaches AXES_FAILURE_LIMIT, so the address cap is expressed as
        "as good as the limit".
        """
        username = get_client_username(request, credentials)
        by_username = _failures(_recent(request).filter(username=username)) if username else 0
        by_address = _failures(_recent(request).filter(ip_address=request.axes_ip_address))
        if by_address >= settings.LOGIN_ADDRESS_FAILURE_LIMIT:
            return max(by_username, settings.AXES_FAILURE_LIMIT)
        return by_username

    def reset_user_attempts(self, request: HttpRequest, credentials: dict | None = None) -> int:
        """On a successful log-in: forget that username's failures from this address only."""
        username = get_client_username(request, credentials)
        if not username:
            return 0
        attempts = AccessAttempt.objects.filter(
            username=username, ip_address=request.axes_ip_address
        )
        return attempts.delete()[0]


def _recent(request: HttpRequest) -> QuerySet[AccessAttempt]:
    return AccessAttempt.objects.filter(attempt_time__gte=get_cool_off_threshold(request))


def _failures(attempts: QuerySet[AccessAttempt]) -> int:
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


def locked_until(request: HttpRequest, credentials: dict | None = None) -> datetime:
    """When the lockout ends: the cool-off after the latest failure that counts."""
    username = get_client_username(request, credentials)
    match = Q(ip_address=getattr(request, "axes_ip_address", None))
    if username:
        match |= Q(username=username)
    latest = _recent(request).filter(match).aggregate(at=Max("attempt_time"))["at"]
    return (latest or timezone.now()) + get_cool_off(request)


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """The "too many attempts, try again in N minutes" page, as 429."""
    remaining = (locked_until(request, credentials) - timezone.now()).total_seconds()
    minutes = max(1, math.ceil(remaining / 60))
    response = render(request, "registration/locked.html", {"minutes": minutes}, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response
