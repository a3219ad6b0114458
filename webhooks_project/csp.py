"""The Content-Security-Policy middleware, with the additions of third-party pages.

Our own pages load only our own files and run no inline code. The rq dashboard (django-rq's
templates, staff only) has inline scripts and styles of its own, so its pages alone allow
inline code; the docs page gets its additions from its view (see webhooks_project/api_urls.py).
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.middleware import PolicyParts
from django.http import HttpRequest, HttpResponseBase

RQ_DASHBOARD_PREFIX = "/admin/rq/"
RQ_DASHBOARD_ADDITIONS = {
    "script-src": ["'unsafe-inline'"],
    "style-src": ["'unsafe-inline'"],
}


class CSPMiddleware(BaseCSPMiddleware):
    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if request.path_info.startswith(RQ_DASHBOARD_PREFIX):
            parts.update = {**RQ_DASHBOARD_ADDITIONS, **(parts.update or {})}
        return parts
