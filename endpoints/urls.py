"""Webhook Management. Endpoints are addressed by their public ids (`ep_...`)."""

from django.urls import path

from endpoints import replay_views, views

urlpatterns = [
    path("", views.index, name="index"),
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
    path("webhooks/<str:public_id>/headers/reveal/", views.reveal_headers, name="reveal_headers"),
    path(
        "webhooks/<str:public_id>/secret/rotate/confirm/",
        views.confirm_rotate_secret,
        name="confirm_rotate_secret",
    ),
    path("webhooks/<str:public_id>/secret/rotate/", views.rotate_secret, name="rotate_secret"),
    path("webhooks/<str:public_id>/retry-failed/", views.retry_failed, name="retry_failed"),
    path(
        "webhooks/<str:public_id>/past-events/",
        replay_views.confirm_past_events,
        name="confirm_past_events",
    ),
    path(
        "webhooks/<str:public_id>/past-events/send/",
        replay_views.send_past_events,
        name="send_past_events",
    ),
]
