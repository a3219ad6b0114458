"""Signed-in pages are never cached, so Back shows what is true now.

A browser kept the page of a webhook that was just deleted and showed it again on Back,
enabled, with buttons that answered 404. With `no-store` it asks the server again (Chromium
also keeps such pages out of its back-forward cache), and the 404 page says the webhook is
gone.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

from accounts.api import is_api_request


class PrivatePagesMiddleware:
    """`Cache-Control: no-store, private, ...` on every page for a signed-in user.

    Not the API: its answers choose their own (`no-store` where they carry a full secret).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and "Cache-Control" not in response
            and not is_api_request(request)
        ):
            add_never_cache_headers(response)
        return response
