"""The REST API under /api/."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import (
    api,
    api_schema,  # noqa: F401  (registers the bearer-key scheme)
    merchants_api,
    oauth_api,
)
from deliveries import api as deliveries_api
from endpoints import api as endpoints_api
from endpoints import operator_api
from tooling import loyalty_api


class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI from our own static files (drf-spectacular-sidecar): no CDN, works offline.

    The split view serves its start-up script as a file of its own (`?script`), so the page
    runs no inline script. (Redoc was tried first: it always loads its logo from its CDN.)
    """

    template_name = "api_docs.html"
    authentication_classes = []
    permission_classes = []
    throttle_classes = []


api_docs = ApiDocsView.as_view(url_name="api-schema")

urlpatterns = [
    path("v1/oauth/token", oauth_api.oauth_token, name="api-oauth-token"),
    path("v1/merchants", merchants_api.merchants, name="api-merchants"),
    path("v1/merchants/<str:public_id>", merchants_api.merchant, name="api-merchant"),
    path(
        "v1/merchants/<str:public_id>/portal-links",
        merchants_api.portal_links,
        name="api-merchant-portal-links",
    ),
    path("v1/operator-webhooks", operator_api.operator_webhooks, name="api-operator-webhooks"),
    path(
        "v1/operator-webhooks/<str:public_id>",
        operator_api.operator_webhook,
        name="api-operator-webhook",
    ),
    path("v1/webhooks", endpoints_api.webhooks, name="api-webhooks"),
    path("v1/webhook", endpoints_api.webhook_alias, name="api-webhook-alias"),
    path("v1/webhooks/<str:public_id>", endpoints_api.webhook, name="api-webhook"),
    path("v1/webhooks/<str:public_id>/test", endpoints_api.webhook_test, name="api-webhook-test"),
    path(
        "v1/webhooks/<str:public_id>/rotate-secret",
        endpoints_api.webhook_rotate_secret,
        name="api-webhook-rotate-secret",
    ),
    path(
        "v1/webhooks/<str:public_id>/recover",
        endpoints_api.webhook_recover,
        name="api-webhook-recover",
    ),
    path(
        "v1/webhooks/<str:public_id>/replay",
        endpoints_api.webhook_replay,
        name="api-webhook-replay",
    ),
    path("v1/events", deliveries_api.events, name="api-events"),
    path("v1/events/batch", deliveries_api.events_batch, name="api-events-batch"),
    path("v1/events/<str:public_id>", deliveries_api.event, name="api-event"),
    path("v1/deliveries", deliveries_api.deliveries, name="api-deliveries"),
    path("v1/deliveries/<str:public_id>", deliveries_api.delivery, name="api-delivery"),
    path(
        "v1/deliveries/<str:public_id>/retry",
        deliveries_api.delivery_retry,
        name="api-delivery-retry",
    ),
    path("v1/event-types", deliveries_api.event_types, name="api-event-types"),
    path(
        "v1/loyalty/fetch-member-point",
        loyalty_api.fetch_member_point,
        name="api-loyalty-fetch-member-point",
    ),
    path(
        "v1/loyalty/order-complete", loyalty_api.order_complete, name="api-loyalty-order-complete"
    ),
    path(
        "v1/loyalty/validate-coupon",
        loyalty_api.validate_coupon,
        name="api-loyalty-validate-coupon",
    ),
    path(
        "v1/openapi.json",
        SpectacularAPIView.as_view(
            authentication_classes=[], permission_classes=[], throttle_classes=[]
        ),
        {"format": "json"},
        name="api-schema",
    ),
    path("docs/", api_docs, name="api-docs"),
    # Last: any other path under /api/ is a 404 in the API's JSON shape, not an HTML page.
    re_path(r"^", api.not_found),
]
