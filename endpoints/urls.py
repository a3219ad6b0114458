"""The merchant dashboard. Objects are addressed by their public ids (`ep_...`, `dlv_...`)."""

from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from deliveries import views as delivery_views
from endpoints import tooling_views, views

urlpatterns = [
    path("", views.index, name="index"),
    # Account
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            template_name="accounts/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("accounts/logout/", views.logout_view, name="logout"),
    path("accounts/password/", views.password_change, name="password_change"),
    # Webhook Management
    path("webhooks/", views.webhooks, name="webhooks"),
    path("webhooks/add/", views.add_webhook, name="add_webhook"),
    path("webhooks/<str:public_id>/", views.webhook, name="webhook"),
    path("webhooks/<str:public_id>/edit/", views.edit_webhook, name="edit_webhook"),
    path(
        "webhooks/<str:public_id>/delete/confirm/",
        views.confirm_delete_webhook,
        name="confirm_delete_webhook",
    ),
    path("webhooks/<str:public_id>/delete/", views.delete_webhook, name="delete_webhook"),
    path("webhooks/<str:public_id>/disable/", views.disable_webhook, name="disable_webhook"),
    path("webhooks/<str:public_id>/enable/", views.enable_webhook, name="enable_webhook"),
    path("webhooks/<str:public_id>/test/", views.send_test, name="send_test"),
    path("webhooks/<str:public_id>/secret/reveal/", views.reveal_secret, name="reveal_secret"),
    path(
        "webhooks/<str:public_id>/secret/rotate/confirm/",
        views.confirm_rotate_secret,
        name="confirm_rotate_secret",
    ),
    path("webhooks/<str:public_id>/secret/rotate/", views.rotate_secret, name="rotate_secret"),
    path("webhooks/<str:public_id>/retry-failed/", views.retry_failed, name="retry_failed"),
    # Deliveries and events
    path("deliveries/<str:public_id>/", delivery_views.delivery, name="delivery"),
    path("deliveries/<str:public_id>/retry/", delivery_views.retry_delivery, name="retry_delivery"),
    path("events/", delivery_views.events, name="events"),
    path("events/<str:public_id>/", delivery_views.event, name="event"),
    path(
        "events/<str:public_id>/resend/confirm/",
        delivery_views.confirm_resend_event,
        name="confirm_resend_event",
    ),
    path("events/<str:public_id>/resend/", delivery_views.resend_event, name="resend_event"),
    # API keys (ApiKey has no public id; the ownership helper scopes the pk to the merchant)
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/create/", views.create_api_key, name="create_api_key"),
    path(
        "api-keys/<int:key_id>/revoke/confirm/",
        views.confirm_revoke_api_key,
        name="confirm_revoke_api_key",
    ),
    path("api-keys/<int:key_id>/revoke/", views.revoke_api_key, name="revoke_api_key"),
    path("api-keys/oauth/create/", views.create_oauth_client, name="create_oauth_client"),
    path(
        "api-keys/oauth/<int:client_id>/delete/confirm/",
        views.confirm_delete_oauth_client,
        name="confirm_delete_oauth_client",
    ),
    path(
        "api-keys/oauth/<int:client_id>/delete/",
        views.delete_oauth_client,
        name="delete_oauth_client",
    ),
    # Request inspector: the dashboard pages, and the public URL that catches requests
    path("inspector/", tooling_views.inspectors, name="inspectors"),
    path("inspector/create/", tooling_views.create_inspector, name="create_inspector"),
    path("inspector/<str:public_id>/", tooling_views.inspector, name="inspector"),
    path(
        "inspector/<str:public_id>/answer/",
        tooling_views.inspector_answer,
        name="inspector_answer",
    ),
    path(
        "inspector/<str:public_id>/use-as-webhook/",
        tooling_views.use_inspector,
        name="use_inspector",
    ),
    path(
        "inspector/<str:public_id>/clear/confirm/",
        tooling_views.confirm_clear_inspector,
        name="confirm_clear_inspector",
    ),
    path("inspector/<str:public_id>/clear/", tooling_views.clear_inspector, name="clear_inspector"),
    path(
        "inspector/<str:public_id>/delete/confirm/",
        tooling_views.confirm_delete_inspector,
        name="confirm_delete_inspector",
    ),
    path(
        "inspector/<str:public_id>/delete/",
        tooling_views.delete_inspector,
        name="delete_inspector",
    ),
    # Any path under the token is caught too, and a missing trailing slash is no redirect
    # (senders do not follow redirects, and Django cannot redirect a POST).
    path("catch/<str:token>/", tooling_views.catch, name="catch"),
    re_path(r"^catch/(?P<token>[A-Za-z0-9_-]+)$", tooling_views.catch, name="catch_no_slash"),
    re_path(
        r"^catch/(?P<token>[A-Za-z0-9_-]+)/(?P<rest>.+)$",
        tooling_views.catch,
        name="catch_subpath",
    ),
    # External apps (DealPOS's External Loyalty App)
    path("external-apps/", tooling_views.external_apps, name="external_apps"),
    path(
        "external-apps/loyalty/secret/reveal/",
        tooling_views.reveal_loyalty_secret,
        name="reveal_loyalty_secret",
    ),
    path(
        "external-apps/loyalty/remove/confirm/",
        tooling_views.confirm_remove_loyalty_app,
        name="confirm_remove_loyalty_app",
    ),
    path(
        "external-apps/loyalty/remove/",
        tooling_views.remove_loyalty_app,
        name="remove_loyalty_app",
    ),
    # Event catalogue and receiver docs
    path("catalogue/", tooling_views.catalogue, name="catalogue"),
]
