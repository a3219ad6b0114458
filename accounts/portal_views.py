"""Opening a sign-in link: `/portal/<token>/` signs the browser into one merchant's dashboard.

A used, expired or altered link shows a page that says so and signs nobody in. An embedded
session (the link was made with `embed`) gets the dashboard without its top navigation and
may be framed by the origins in PORTAL_FRAME_ANCESTORS (see webhooks_project/portal_frame.py).
"""

from __future__ import annotations

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.contrib.auth import login, logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from accounts import portal

EMBED_SESSION_KEY = "portal_embed"

_PROBLEMS = {
    "unknown": "This sign-in link is not valid. It may have been copied incompletely.",
    "used": "This sign-in link was already used. Each link signs in once.",
    "expired": "This sign-in link has expired.",
}


@require_safe
@never_cache
def portal_sign_in(request: HttpRequest, token: str) -> HttpResponse:
    address = get_client_ip_address(request)
    limit, window = settings.PORTAL_REDEEM_RATE_LIMIT
    allowed, wait = portal.within_rate(f"redeem:{address}", limit, window)
    if not allowed:
        response = render(
            request,
            "accounts/portal_refused.html",
            {"problem": "Too many sign-in links were opened from here. Try again shortly."},
            status=429,
        )
        response["Retry-After"] = str(wait)
        return response
    outcome = portal.redeem(token, address)
    if outcome.link is None:
        status = 404 if outcome.problem == "unknown" else 410
        return render(
            request,
            "accounts/portal_refused.html",
            {"problem": _PROBLEMS[outcome.problem]},
            status=status,
        )
    link = outcome.link
    if request.user.is_authenticated:
        logout(request)  # whoever was signed in here before, the link is for its merchant
    login(
        request,
        portal.portal_user(link.merchant),
        backend="django.contrib.auth.backends.ModelBackend",
    )
    request.session.set_expiry(link.session_seconds)
    request.session[EMBED_SESSION_KEY] = link.embed
    return redirect("webhooks")
