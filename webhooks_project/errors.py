"""The site's 404 page, which says what is missing when a dashboard view knows it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.template import loader

from accounts import api
from lib.pages import NotHere


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: the API's JSON shape under /api/, the site's page elsewhere.

    A `NotHere` (a deleted webhook reached with Back, say) gets its own sentence; any other
    404 the page's general one.
    """
    if api.is_api_request(request):
        return api.not_found(request, exception)
    message = str(exception) if isinstance(exception, NotHere) else ""
    body = loader.render_to_string("404.html", {"message": message}, request)
    response = HttpResponseNotFound(body)
    # The object may come back (another account's login) or stay gone: never cache this page.
    response["Cache-Control"] = "no-store"
    return response
