"""Who is asking (the client address used by the login lockout), and what logs never show."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.http import HttpRequest

_CATCH_PATH = re.compile(r"/catch/[A-Za-z0-9_-]+")


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


class RedactInspectorTokens(logging.Filter):
    """Replace inspector tokens in logged request paths with `<token>`.

    An inspector's URL is its only credential, and Django logs the path of every request
    that ends in an error.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/catch/" in message:
            record.msg = _CATCH_PATH.sub("/catch/<token>", message)
            record.args = None
        return True
