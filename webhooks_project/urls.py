from django.contrib import admin
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

from operations import health


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """Browsers ask for /favicon.ico on pages that name no icon (the admin's): a 404 on every
    page filled the console with errors. Resolved per request: the static file's hashed name
    is known only once collectstatic ran.
    """
    return HttpResponsePermanentRedirect(static("favicon.svg"))


# Server errors under /api/ answer the API's JSON shape (unknown /api/ paths: api_urls.py).
handler500 = "accounts.api.server_error"
handler404 = "webhooks_project.errors.not_found"

admin.site.site_header = "POS Webhooks administration"
admin.site.site_title = "POS Webhooks"
# The app list is on the index page; beside every change list it took the room of two
# columns, and put the delivery list's status off-screen.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    # Normally answered by health.ProbeMiddleware before routing; here for reverse() and
    # for deployments that leave the middleware out.
    path("healthz", health.healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("metrics", health.metrics, name="metrics"),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("webhooks_project.api_urls")),
    path("", include("endpoints.urls")),
    path("", include("accounts.urls")),
    path("", include("deliveries.urls")),
    path("", include("tooling.urls")),
    path("", include("catalogue.urls")),
]
