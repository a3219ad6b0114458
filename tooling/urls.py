"""The request inspector (its pages and its public catch URL) and the external apps."""

from django.urls import path, re_path

from tooling import views

urlpatterns = [
    # Request inspector: the dashboard pages, and the public URL that catches requests
    path("inspector/", views.inspectors, name="inspectors"),
    path("inspector/create/", views.create_inspector, name="create_inspector"),
    path("inspector/<str:public_id>/", views.inspector, name="inspector"),
    path(
        "inspector/<str:public_id>/answer/",
        views.inspector_answer,
        name="inspector_answer",
    ),
    path(
        "inspector/<str:public_id>/use-as-webhook/",
        views.use_inspector,
        name="use_inspector",
    ),
    path(
        "inspector/<str:public_id>/clear/confirm/",
        views.confirm_clear_inspector,
        name="confirm_clear_inspector",
    ),
    path("inspector/<str:public_id>/clear/", views.clear_inspector, name="clear_inspector"),
    path(
        "inspector/<str:public_id>/delete/confirm/",
        views.confirm_delete_inspector,
        name="confirm_delete_inspector",
    ),
    path(
        "inspector/<str:public_id>/delete/",
        views.delete_inspector,
        name="delete_inspector",
    ),
    # Any path under the token is caught too, and a missing trailing slash is no redirect
    # (senders do not follow redirects, and Django cannot redirect a POST).
    path("catch/<str:token>/", views.catch, name="catch"),
    re_path(r"^catch/(?P<token>[A-Za-z0-9_-]+)$", views.catch, name="catch_no_slash"),
    re_path(
        r"^catch/(?P<token>[A-Za-z0-9_-]+)/(?P<rest>.+)$",
        views.catch,
        name="catch_subpath",
    ),
    # External apps (DealPOS's External Loyalty App)
    path("external-apps/", views.external_apps, name="external_apps"),
    path(
        "external-apps/loyalty/secret/reveal/",
        views.reveal_loyalty_secret,
        name="reveal_loyalty_secret",
    ),
    path(
        "external-apps/loyalty/remove/confirm/",
        views.confirm_remove_loyalty_app,
        name="confirm_remove_loyalty_app",
    ),
    path(
        "external-apps/loyalty/remove/",
        views.remove_loyalty_app,
        name="remove_loyalty_app",
    ),
]
