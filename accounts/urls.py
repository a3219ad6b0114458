"""Account pages: sign in and out, password, API keys and OAuth clients."""

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import portal_views, views

urlpatterns = [
    # Account
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            template_name="accounts/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("accounts/logout/", views.logout_view, name="logout"),
    # One-time sign-in links made by the operator API (the token is the credential)
    path("portal/<str:token>/", portal_views.portal_sign_in, name="portal_sign_in"),
    path("accounts/password/", views.password_change, name="password_change"),
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
]
