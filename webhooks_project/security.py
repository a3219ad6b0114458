"""Who is asking: the client address used by the login lockout."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The client's address, trusting X-Forwarded-For only as far as our own proxies.

    With TRUSTED_PROXY_COUNT=0 (the default) the header is ignored entirely, so an attacker
    cannot escape a lockout by sending a new X-Forwarded-For with every attempt. Behind N
    proxies of ours, the address N entries from the right is the one our first proxy saw.
    """
    count = settings.TRUSTED_PROXY_COUNT
    if count > 0:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [h for h in hops if h]
        if len(hops) >= count:
            return hops[-count]
    return request.META.get("REMOTE_ADDR")
