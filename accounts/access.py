"""Who sees what in the dashboard: every page shows the signed-in user's merchant only."""

from __future__ import annotations

from django.http import Http404, HttpRequest

from accounts.models import Merchant


def merchant_for_user(request: HttpRequest) -> Merchant:
    """The signed-in user's merchant; staff without one have no dashboard."""
    merchant = getattr(request.user, "merchant", None)
    if merchant is None:
        raise Http404("No merchant")
    return merchant
