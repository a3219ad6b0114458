"""Growth without bound, bounded: OAuth clients per merchant, expired OAuth tokens pruned by
retention (the daily job), and the inspector's catch URL rate limited per inspector."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken

from accounts.models import Merchant, OAuthClient, User
from operations import retention
from tooling.models import Inspector, InspectorRequest


def test_it_limits_oauth_clients_per_merchant(
    client: Client, owner: User, merchant: Merchant, settings: Any
) -> None:
    settings.MERCHANT_MAX_OAUTH_CLIENTS = 2
    client.force_login(owner)
    for n in range(2):
        created = client.post("/api-keys/oauth/create/", {"client-name": f"POS {n}"})
        assert created.status_code == 200
    refused = client.post("/api-keys/oauth/create/", {"client-name": "one too many"})
    assert refused.status_code == 400
    assert "the most your account allows (2)" in refused.content.decode()
    assert OAuthClient.objects.filter(merchant=merchant).count() == 2

    merchant.max_oauth_clients = 3  # staff raise it in the admin
    merchant.save()
    assert client.post("/api-keys/oauth/create/", {"client-name": "3"}).status_code == 200


def get_token(client_id: str, secret: str) -> Any:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return Client().post(
        "/api/v1/oauth/token",
        "grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
        headers={"authorization": f"Basic {basic}"},
    )


def test_it_prunes_expired_oauth_tokens_with_the_retention_job(
    merchant: Merchant, redis_conn: Any
) -> None:
    oauth_client, secret = OAuthClient.issue(merchant, "POS")
    for _ in range(3):
        assert get_token(oauth_client.client_id, secret).status_code == 200
    expired = AccessToken.objects.order_by("id")[:2]
    AccessToken.objects.filter(pk__in=[t.pk for t in expired]).update(
        expires=timezone.now() - timedelta(minutes=1)
    )
    dry = retention.prune(dry_run=True)
    assert dry.oauth_tokens == 2 and AccessToken.objects.count() == 3

    result = retention.prune()
    assert result.oauth_tokens == 2
    assert "2 expired OAuth tokens" in result.summary()
    assert AccessToken.objects.count() == 1
    assert AccessToken.objects.get().expires > timezone.now()


def test_it_rate_limits_the_catch_url_per_inspector(
    merchant: Merchant, redis_conn: Any, settings: Any
) -> None:
    settings.INSPECTOR_CATCH_RATE = (3, 60)
    inspector = Inspector.objects.create(merchant=merchant, name="Busy")
    other = Inspector.objects.create(merchant=merchant, name="Quiet")
    for n in range(3):
        assert Client().post(inspector.path, {"n": n}).status_code == 200
    refused = Client().post(inspector.path, {"n": 4})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert "Too many requests" in refused.json()["error"]
    assert InspectorRequest.objects.filter(inspector=inspector).count() == 3
    # Another inspector has its own budget.
    assert Client().post(other.path, {"n": 1}).status_code == 200
