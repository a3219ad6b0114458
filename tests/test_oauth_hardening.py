"""The OAuth token endpoint under attack: other grants, slow secrets, guessing.

POST /api/v1/oauth/token serves the client-credentials grant only. Anything else is refused
before a password or secret is checked; failed client authentications are rate limited per
client id and per address; client secrets are one SHA-256, as API keys.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client
from oauth2_provider.models import AccessToken, Application

from accounts.models import Merchant, OAuthClient, User
from tests.conftest import PASSWORD

FORM = "application/x-www-form-urlencoded"


def issue(merchant: Merchant) -> tuple[str, str]:
    client, secret = OAuthClient.issue(merchant, "myPOS integration")
    return client.client_id, secret


def token_request(
    client_id: str, secret: str, grant: str = "grant_type=client_credentials", **extra: Any
) -> Any:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return Client(**extra).post(
        "/api/v1/oauth/token", grant, content_type=FORM, headers={"authorization": f"Basic {basic}"}
    )


def password_grant(client_id: str, secret: str, username: str, password: str) -> Any:
    return token_request(
        client_id, secret, f"grant_type=password&username={username}&password={password}"
    )


def test_it_answers_the_password_grant_the_same_for_right_and_wrong_passwords(
    merchant: Merchant, owner: User, outsider: User, staff: User
) -> None:
    client_id, secret = issue(merchant)
    for user in (owner, outsider, staff):
        right = password_grant(client_id, secret, user.username, PASSWORD)
        wrong = password_grant(client_id, secret, user.username, "not-the-password")
        assert right.status_code == wrong.status_code == 400
        assert right.json() == wrong.json()
        assert right.json()["error"] == "unsupported_grant_type"
    assert not AccessToken.objects.exists()


@pytest.mark.parametrize(
    "grant",
    [
        "grant_type=refresh_token&refresh_token=x",
        "grant_type=authorization_code&code=x&redirect_uri=https://a.example/",
        "grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=x",
    ],
)
def test_it_refuses_every_other_grant_type_without_checking_the_client(
    merchant: Merchant, grant: str
) -> None:
    client_id, _ = issue(merchant)
    response = token_request(client_id, "wrong secret", grant)
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_it_stores_client_secrets_as_one_sha256(merchant: Merchant) -> None:
    client_id, secret = issue(merchant)
    stored = Application.objects.get(client_id=client_id).client_secret
    assert stored == "sha256$$" + hashlib.sha256(secret.encode()).hexdigest()
    assert token_request(client_id, secret).status_code == 200


def legacy_client(merchant: Merchant) -> tuple[str, str]:
    """A client whose secret was hashed with PBKDF2, as before client secrets used SHA-256."""
    client_id, secret = issue(merchant)
    Application.objects.filter(client_id=client_id).update(
        client_secret=make_password(secret, hasher="pbkdf2_sha256")
    )
    return client_id, secret


def test_it_accepts_a_secret_hashed_with_pbkdf2_and_rehashes_it(
    merchant: Merchant, redis_conn: Any
) -> None:
    client_id, secret = legacy_client(merchant)
    assert token_request(client_id, secret).status_code == 200
    stored = Application.objects.get(client_id=client_id).client_secret
    assert stored == "sha256$$" + hashlib.sha256(secret.encode()).hexdigest()
    assert token_request(client_id, secret).status_code == 200


def test_it_keeps_a_pbkdf2_hash_when_the_secret_is_wrong(
    merchant: Merchant, redis_conn: Any
) -> None:
    client_id, secret = legacy_client(merchant)
    assert token_request(client_id, secret + "x").status_code == 401
    assert Application.objects.get(client_id=client_id).client_secret.startswith("pbkdf2_sha256$")


def test_it_rate_limits_failed_authentications_per_client_id(
    merchant: Merchant, redis_conn: Any, settings: Any
) -> None:
    settings.OAUTH_CLIENT_FAILURE_LIMIT = 3
    client_id, secret = issue(merchant)
    other_id, other_secret = issue(merchant)
    for _ in range(3):
        assert token_request(client_id, "wrong").status_code == 401
    refused = token_request(client_id, secret)  # even the right secret, until the window ends
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert refused.json()["error"] == "rate_limited"
    assert not AccessToken.objects.exists()
    # Another client from the same address is not held back.
    assert token_request(other_id, other_secret).status_code == 200


def test_it_rate_limits_failed_authentications_per_address(
    merchant: Merchant, redis_conn: Any, settings: Any
) -> None:
    settings.OAUTH_ADDRESS_FAILURE_LIMIT = 4
    ids = [issue(merchant) for _ in range(3)]
    for client_id, _ in ids[:2]:
        assert token_request(client_id, "wrong").status_code == 401
        assert token_request(client_id, "wrong").status_code == 401
    client_id, secret = ids[2]
    refused = token_request(client_id, secret)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    # Another address is not held back.
    elsewhere = token_request(client_id, secret, REMOTE_ADDR="127.0.0.2")
    assert elsewhere.status_code == 200


def test_it_does_not_count_successes(merchant: Merchant, redis_conn: Any, settings: Any) -> None:
    settings.OAUTH_CLIENT_FAILURE_LIMIT = 2
    settings.OAUTH_ADDRESS_FAILURE_LIMIT = 2
    client_id, secret = issue(merchant)
    for _ in range(5):
        assert token_request(client_id, secret).status_code == 200
