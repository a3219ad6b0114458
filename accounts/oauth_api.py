"""POST /api/v1/oauth/token: OAuth 2.0 client credentials (RFC 6749 section 4.4).

myPOS integrators call the API with "the generated oAuth Token". A merchant creates a client
id and secret on the API keys page; this endpoint trades them for an expiring bearer token
that reaches that merchant's data only. django-oauth-toolkit does the grant; this view is
here so the endpoint sits under /api/v1 and in the OpenAPI schema.
"""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from oauth2_provider.views import TokenView
from rest_framework import serializers
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    parser_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request

from accounts import oauth_guard
from webhooks_project.security import client_ip

TokenRequest = inline_serializer(
    "OAuthTokenRequest",
    {
        "grant_type": serializers.ChoiceField(["client_credentials"]),
        "client_id": serializers.CharField(
            required=False, help_text="Or send id and secret with HTTP Basic authentication."
        ),
        "client_secret": serializers.CharField(required=False),
    },
)
TokenResponse = inline_serializer(
    "OAuthToken",
    {
        "access_token": serializers.CharField(),
        "token_type": serializers.CharField(help_text="Always `Bearer`."),
        "expires_in": serializers.IntegerField(help_text="Seconds the token is valid for."),
        "scope": serializers.CharField(),
    },
)
TokenError = inline_serializer(
    "OAuthError",
    {
        "error": serializers.CharField(help_text="RFC 6749: invalid_client, invalid_grant ..."),
        "error_description": serializers.CharField(required=False),
    },
)


@extend_schema(
    operation_id="oauth_token",
    tags=["oauth"],
    auth=[],
    request={"application/x-www-form-urlencoded": TokenRequest},
    responses={200: TokenResponse, 400: TokenError, 401: TokenError, 429: TokenError},
    description=(
        "OAuth 2.0 client-credentials grant. Create a client on the dashboard's API keys "
        "page, then send `grant_type=client_credentials` with the client id and secret "
        "(HTTP Basic, or `client_id` and `client_secret` in the form). Use the "
        "`access_token` as `Authorization: Bearer <token>` on every other endpoint until "
        "it expires; API keys keep working beside it. Errors follow RFC 6749 "
        '(`{"error": "invalid_client"}`), not this API\'s error shape. Other grant types '
        "are refused with `unsupported_grant_type`. After too many failed client "
        "authentications for one client id or from one address the answer is 429 "
        '(`{"error": "rate_limited"}`) with `Retry-After`, whatever the secret.'
    ),
    examples=[
        OpenApiExample(
            "Token",
            value={
                "access_token": "PLpC1CqVE9CYXolbGNBPqz0NYy8asFzG95XcToDsMP",
                "expires_in": 3600,
                "token_type": "Bearer",
                "scope": "api",
            },
            response_only=True,
        )
    ],
)
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])
@parser_classes([FormParser])
def oauth_token(request: Request) -> HttpResponse:
    # The toolkit reads the form from Django's request; DRF has not consumed its body, as
    # this view never touches request.data (Django's POST keeps the body readable).
    django_request = request._request
    refusal = oauth_guard.check_grant(django_request)
    client_id, secret = oauth_guard.client_credentials(django_request)
    address = client_ip(django_request) or ""
    if refusal is None:
        refusal = oauth_guard.check_failures(client_id, address)
    if refusal is not None:
        return _refused(refusal)
    response = TokenView.as_view()(django_request)
    if response.status_code == 401:
        oauth_guard.record_failure(client_id, address)
    elif response.status_code == 200:
        oauth_guard.rehash_secret(client_id, secret)
    return response


def _refused(refusal: oauth_guard.Refusal) -> JsonResponse:
    """An RFC 6749 error body, like the toolkit's own answers."""
    response = JsonResponse(
        {"error": refusal.error, "error_description": refusal.description},
        status=refusal.status,
    )
    response["Cache-Control"] = "no-store"
    if refusal.retry_after:
        response["Retry-After"] = str(refusal.retry_after)
    return response
