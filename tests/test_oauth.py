"""OAuth 2.0 client credentials (issue 15, item 12): myPOS's "generated oAuth Token".

A merchant creates a client on the API keys page; POST /api/v1/oauth/token trades its id and
secret for an expiring bearer token that reaches that merchant's data only. API keys keep
working beside it.
"""

from __future__ import annotations

import base64
import ipaddress
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken

from accounts.models import ApiKey, Merchant, OAuthClient, User
from endpoints.models import Endpoint
from lib import http

FORM = "application/x-www-form-urlencoded"
# myPOS's create call, byte for byte (its documentation's curl example's -d).
MYPOS_CREATE = (
    "payload_url=https%3A%2F%2Fmywebsite.com%2Fwebhook-callback&secret=myrandomgeneratedsecret"
)


@pytest.fixture(autouse=True)
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DNS here: the seed's host resolves to a public address that is never contacted."""

    def resolve(host: str, port: int) -> list[Any]:
        if host.endswith("mywebsite.com"):
            return [ipaddress.ip_address("93.184.215.14")]
        raise OSError("no DNS in tests")

    monkeypatch.setattr(http, "resolve", resolve)


def issue(merchant: Merchant) -> tuple[str, str]:
    client, secret = OAuthClient.issue(merchant, "myPOS integration")
    return client.client_id, secret


def get_token(client_id: str, secret: str) -> Any:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return Client().post(
        "/api/v1/oauth/token",
        "grant_type=client_credentials",
        content_type=FORM,
        headers={"authorization": f"Basic {basic}"},
    )


def bearer(token: str) -> Client:
    return Client(headers={"authorization": f"Bearer {token}"})


def test_it_issues_an_expiring_token_for_client_credentials(merchant: Merchant) -> None:
    response = get_token(*issue(merchant))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert "refresh_token" not in body  # the client-credentials grant has none
    token = AccessToken.objects.get()
    assert token.token == ""  # only the checksum is stored
    assert token.expires > timezone.now() + timedelta(minutes=59)


def test_it_takes_the_client_secret_in_the_form_too(merchant: Merchant) -> None:
    client_id, secret = issue(merchant)
    response = Client().post(
        "/api/v1/oauth/token",
        f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}",
        content_type=FORM,
    )
    assert response.status_code == 200, response.content


def test_it_replays_the_mypos_create_call_with_the_oauth_token(merchant: Merchant) -> None:
    token = get_token(*issue(merchant)).json()["access_token"]
    response = bearer(token).post("/api/v1/webhooks", MYPOS_CREATE, content_type=FORM)
    assert response.status_code == 201, response.content
    webhook = response.json()["webhook"]
    assert webhook["payload_url"] == "https://mywebsite.com/webhook-callback"
    assert webhook["secret"] == "myrandomgeneratedsecret"
    assert webhook["is_active"] is True
    assert Endpoint.objects.get().merchant == merchant


def test_it_scopes_the_token_to_its_merchant(
    merchant: Merchant, outsider_merchant: Merchant
) -> None:
    theirs = Endpoint.objects.create(merchant=outsider_merchant, url="https://mywebsite.com/x")
    token = get_token(*issue(merchant)).json()["access_token"]
    api = bearer(token)
    assert api.get("/api/v1/webhooks").json()["webhooks"] == []
    assert api.get(f"/api/v1/webhooks/{theirs.public_id}").status_code == 404


def test_it_refuses_a_wrong_secret_and_an_expired_token(merchant: Merchant) -> None:
    client_id, secret = issue(merchant)
    refused = get_token(client_id, secret + "x")
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"

    token = get_token(client_id, secret).json()["access_token"]
    AccessToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    response = bearer(token).get("/api/v1/webhooks")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_it_refuses_other_grants(merchant: Merchant) -> None:
    client_id, secret = issue(merchant)
    response = Client().post(
        "/api/v1/oauth/token",
        f"grant_type=password&username=owner&password=x&client_id={client_id}"
        f"&client_secret={secret}",
        content_type=FORM,
    )
    assert response.status_code in (400, 401)
    assert not AccessToken.objects.exists()


def test_it_keeps_api_keys_working(merchant: Merchant) -> None:
    issue(merchant)
    raw_key = ApiKey.issue(merchant, "POS")[1]
    assert bearer(raw_key).get("/api/v1/webhooks").status_code == 200


def test_it_creates_and_deletes_clients_on_the_api_keys_page(
    client: Client, owner: User, merchant: Merchant, outsider: User
) -> None:
    client.force_login(owner)
    response = client.post("/api-keys/oauth/create/", {"client-name": "myPOS"})
    assert response.status_code == 200
    oauth_client = OAuthClient.objects.get()
    assert oauth_client.merchant == merchant
    page = response.content.decode()
    assert oauth_client.client_id in page
    assert "will not be shown again" in page
    secret = response.context["raw_secret"]
    token = get_token(oauth_client.client_id, secret).json()["access_token"]

    listing = client.get("/api-keys/").content.decode()
    assert oauth_client.client_id in listing
    assert secret not in listing

    # Another merchant's user cannot see or delete it.
    other = Client()
    other.force_login(outsider)
    assert other.post(f"/api-keys/oauth/{oauth_client.pk}/delete/").status_code == 404

    client.post(f"/api-keys/oauth/{oauth_client.pk}/delete/")
    assert not OAuthClient.objects.exists()
    assert bearer(token).get("/api/v1/webhooks").status_code == 401


def test_it_documents_the_token_endpoint_in_the_openapi_schema(db: None) -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    operation = schema["paths"]["/api/v1/oauth/token"]["post"]
    assert operation["operationId"] == "oauth_token"
    assert "application/x-www-form-urlencoded" in operation["requestBody"]["content"]
    assert "access_token" in str(operation["responses"]["200"])
