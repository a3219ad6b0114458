"""Embedded dashboard sessions: framing by the back office, and cookies that reach the frame.

A session signed in by a sign-in link made with `embed` may be shown in an iframe by the
origins in PORTAL_FRAME_ANCESTORS: its pages get those origins as CSP `frame-ancestors`
instead of 'none', and no X-Frame-Options. Over https its session and CSRF cookies are
`SameSite=None; Secure`, which a browser requires to send cookies inside a cross-site frame.
Every other page keeps refusing to be framed.

It sits before SessionMiddleware, so it sees the response after the session, CSRF,
clickjacking and CSP middlewares have set their cookies and headers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

EMBED_SESSION_KEY = "portal_embed"  # set by accounts.portal_views
_FRAME_ANCESTORS = re.compile(r"frame-ancestors [^;]*")


class PortalFrameMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        session = getattr(request, "session", None)
        origins = settings.PORTAL_FRAME_ANCESTORS
        if session is None or not origins or not session.get(EMBED_SESSION_KEY):
            return response
        if "X-Frame-Options" in response:
            del response["X-Frame-Options"]
        allowed = "frame-ancestors " + " ".join(origins)
        policy = response.get("Content-Security-Policy")
        if policy:
            response["Content-Security-Policy"] = _FRAME_ANCESTORS.sub(allowed, policy)
        if request.is_secure():
            for name in (settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME):
                if name in response.cookies:
                    response.cookies[name]["samesite"] = "None"
                    response.cookies[name]["secure"] = True
        return response
