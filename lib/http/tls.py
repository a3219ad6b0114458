"""Which certificate authorities receivers' TLS certificates are verified against.

Mozilla's bundle (certifi, as requests uses) by default, so every machine trusts the same
authorities. A merchant's receiver on its own network may use a private CA: the operator names
its bundle in WEBHOOK_CA_BUNDLE, or sets REQUESTS_CA_BUNDLE or SSL_CERT_FILE as requests and
Python honour them. Both clients (the synchronous one and the worker's asynchronous one) use it.

Imports no other module of the package.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache

import certifi


def ca_file() -> str:
    """The CA bundle to verify receivers with: the setting, then the environment, then certifi."""
    configured = ""
    try:
        from django.conf import settings

        if settings.configured:
            configured = getattr(settings, "WEBHOOK_CA_BUNDLE", "") or ""
    except ImportError:  # the package also works without Django
        pass
    return (
        configured
        or os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("SSL_CERT_FILE")
        or certifi.where()
    )


@lru_cache(maxsize=4)
def _context_for(path: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=path)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def ssl_context() -> ssl.SSLContext:
    """A verifying client context for the current CA bundle (made once per bundle path)."""
    return _context_for(ca_file())
