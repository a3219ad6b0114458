"""Requests whose path or query carries a NUL character are refused with a 400.

PostgreSQL cannot take U+0000 in a text value, so `?before=%00` or `/events/evt_%00/` reached
a query and answered 500 (schemathesis found `GET /api/v1/deliveries?before=...%00...`).
Refused here once, for the API (its JSON error shape) and the dashboard alike.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from accounts.api import is_api_request, json_error

MESSAGE = "The request's path or query must not contain the NUL character (%00)."


class RefuseNulMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            "\x00" in request.path
            or "\x00" in request.META.get("QUERY_STRING", "")
            or any(
                "\x00" in key or any("\x00" in value for value in values)
                for key, values in request.GET.lists()
            )
        ):
            if is_api_request(request):
                return json_error(400, "invalid_request", MESSAGE)
            return HttpResponseBadRequest(MESSAGE)
        return self.get_response(request)
