"""The account pages: signing out, changing the password, API keys and OAuth clients.

Every view is scoped to the user's merchant (`merchant_for_user`); a key or client of
another merchant answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from accounts import limits
from accounts.access import merchant_for_user
from accounts.forms import ApiKeyForm, OAuthClientForm
from accounts.models import ApiKey, OAuthClient
from lib.text import visible


def _get_api_key_for_user(request: HttpRequest, key_id: int) -> ApiKey:
    return get_object_or_404(ApiKey, pk=key_id, merchant=merchant_for_user(request))


def _get_oauth_client_for_user(request: HttpRequest, client_id: int) -> OAuthClient:
    return get_object_or_404(
        OAuthClient.objects.select_related("application"),
        pk=client_id,
        merchant=merchant_for_user(request),
    )


# --- API keys ---------------------------------------------------------------------------------


def _render_api_keys(
    request: HttpRequest,
    form: ApiKeyForm | None = None,
    client_form: OAuthClientForm | None = None,
    status: int = 200,
) -> HttpResponse:
    merchant = merchant_for_user(request)
    keys = ApiKey.objects.filter(merchant=merchant).select_related("created_by")
    clients = OAuthClient.objects.filter(merchant=merchant).select_related(
        "application", "created_by"
    )
    context = {
        "keys": keys,
        "clients": clients,
        "form": form or ApiKeyForm(),
        "client_form": client_form or OAuthClientForm(prefix="client"),
    }
    return render(request, "api_keys/list.html", context, status=status)


@login_required
@require_safe
def api_keys(request: HttpRequest) -> HttpResponse:
    return _render_api_keys(request)


@login_required
@require_POST
@never_cache
def create_api_key(request: HttpRequest) -> HttpResponse:
    merchant = merchant_for_user(request)
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _render_api_keys(request, form=form, status=400)
    try:
        with limits.adding(merchant, "api_keys"):
            key, raw_key = ApiKey.issue(
                merchant, form.cleaned_data["name"], created_by=request.user
            )
    except limits.LimitReached as exc:
        form.add_error(None, str(exc))
        return _render_api_keys(request, form=form, status=400)
    # No flash message: the page's own heading already says the key was created.
    # Rendered, not redirected to: the raw key exists only in this response, never in the
    # session or a URL, and cannot be shown again.
    return render(request, "api_keys/created.html", {"key": key, "raw_key": raw_key})


@login_required
@require_safe
def confirm_revoke_api_key(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _get_api_key_for_user(request, key_id)
    return render(request, "api_keys/revoke.html", {"key": key})


@login_required
@require_POST
def revoke_api_key(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _get_api_key_for_user(request, key_id)
    if key.is_active:
        key.revoke()
        messages.success(request, f"API key “{visible(key.name)}” revoked. It no longer works.")
    else:
        messages.info(request, f"API key “{visible(key.name)}” was already revoked.")
    return redirect("api_keys")


# --- OAuth clients (myPOS's "generated oAuth Token") ----------------------------------------


@login_required
@require_POST
@never_cache
def create_oauth_client(request: HttpRequest) -> HttpResponse:
    merchant = merchant_for_user(request)
    form = OAuthClientForm(request.POST, prefix="client")
    if not form.is_valid():
        return _render_api_keys(request, client_form=form, status=400)
    try:
        with limits.adding(merchant, "oauth_clients"):
            client, raw_secret = OAuthClient.issue(
                merchant, form.cleaned_data["name"], created_by=request.user
            )
    except limits.LimitReached as exc:
        form.add_error(None, str(exc))
        return _render_api_keys(request, client_form=form, status=400)
    # Rendered, not redirected to, like a new API key: the secret is stored hashed only.
    return render(
        request,
        "api_keys/client_created.html",
        {"client": client, "raw_secret": raw_secret, "token_url": _token_url(request)},
    )


def _token_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("api-oauth-token"))


@login_required
@require_safe
def confirm_delete_oauth_client(request: HttpRequest, client_id: int) -> HttpResponse:
    client = _get_oauth_client_for_user(request, client_id)
    return render(request, "api_keys/client_delete.html", {"client": client})


@login_required
@require_POST
def delete_oauth_client(request: HttpRequest, client_id: int) -> HttpResponse:
    client = _get_oauth_client_for_user(request, client_id)
    client.delete_with_tokens()
    messages.success(
        request, f"OAuth client “{visible(client.name)}” deleted; its tokens no longer work."
    )
    return redirect("api_keys")


# --- account ----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        update_session_auth_hash(request, user)  # stay signed in on this device
        messages.success(request, "Your password was changed.")
        return redirect("index")
    return render(request, "accounts/password_change.html", {"form": form})


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.info(request, "You are signed out.")
    return redirect("login")
