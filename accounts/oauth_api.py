"""POST /api/v1/oauth/token: OAuth 2.0 client credentials (RFC 6749 section 4.4).

myPOS integrators call the API with "the generated oAuth Token". A merchant creates a client
id and secret on the API keys page; this endpoint trades them for an expiring bearer token
that reaches that merchant's data only. django-oauth-toolkit does the grant; this view is
here so the endpoint sits under /api/v1 and in the OpenAPI schema.
"""

from __future__ import annotations

from django.http import HttpResponse
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
    responses={200: TokenResponse, 400: TokenError, 401: TokenError},
    description=(
        "OAuth 2.0 client-credentials grant. Create a client on the dashboard's API keys "
        "page, then send `grant_type=client_credentials` with the client id and secret "
        "(HTTP Basic, or `client_id` and `client_secret` in the form). Use the "
        "`access_token` as `Authorization: Bearer <token>` on every other endpoint until "
        "it expires; API keys keep working beside it. Errors follow RFC 6749 "
        '(`{"error": "invalid_client"}`), not this API\'s error shape.'
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
    # this view never touches request.data.
    return TokenView.as_view()(request._request)
