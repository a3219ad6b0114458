"""The inspector's public URL (issue 14, items 6 and 7): its token is never logged, its
headers count in its storage limit, and its signature check is bounded."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import Merchant
from deliveries.engine import disable_endpoint
from endpoints.models import Endpoint
from lib import signing
from tooling.models import Inspector, InspectorRequest


@pytest.fixture
def inspector(merchant: Merchant) -> Inspector:
    return Inspector.objects.create(merchant=merchant, name="Try-out")


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    headers = signing.headers([signing.secret_key(secret)], "msg_1", 1_700_000_000, body)
    return {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}


# --- item 6: tokens never logged ----------------------------------------------------------


@pytest.mark.parametrize("answer", [Inspector.Answer.ERROR, Inspector.Answer.GONE])
def test_it_never_logs_the_token_when_answering_an_error_on_purpose(
    inspector: Inspector, answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    inspector.answer = answer
    inspector.save()
    with caplog.at_level(logging.DEBUG):
        response = Client().post(inspector.path, b"{}", content_type="application/json")
    assert response.status_code == int(answer)
    assert inspector.token not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_it_redacts_tokens_from_logged_request_paths(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        logging.getLogger("django.request").error(
            "Internal Server Error: %s", "/catch/AbC-123_secretToken/orders"
        )
    assert "secretToken" not in caplog.text
    assert "Internal Server Error: /catch/<token>/orders" in caplog.text


# --- item 7: headers count, signature check bounded ----------------------------------------


def test_it_counts_headers_in_the_storage_limit(inspector: Inspector) -> None:
    headers = {f"HTTP_X_PAD_{n}": "x" * 1000 for n in range(20)}  # 20 KB of headers
    refused = Client().post(inspector.path, b"{}", content_type="application/json", **headers)
    assert refused.status_code == 431
    assert "headers are larger than 16 KiB" in refused.json()["error"]
    assert not InspectorRequest.objects.exists()
    few = {f"HTTP_X_PAD_{n}": "x" * 1000 for n in range(5)}
    assert Client().post(inspector.path, b"{}", content_type="text/plain", **few).status_code == 200


def test_it_checks_signatures_only_with_enabled_webhooks_pointing_at_it(
    inspector: Inspector, make_endpoint: Callable[..., Endpoint]
) -> None:
    catch_url = f"http://testserver{inspector.path}"
    elsewhere = make_endpoint("http://127.0.0.1:9/elsewhere")
    disabled = make_endpoint(catch_url)
    disable_endpoint(disabled)
    pointing = make_endpoint(catch_url)
    body = b'{"id": "msg_1"}'

    def signature_with(secret: str) -> str:
        Client().post(
            inspector.path, body, content_type="application/json", **signed_headers(secret, body)
        )
        return InspectorRequest.objects.latest("id").signature

    assert signature_with(pointing.secret) == "valid"
    assert signature_with(elsewhere.secret) == "invalid"
    assert signature_with(disabled.secret) == "invalid"
    assert signature_with(inspector.merchant.webhook_secret) == "valid"  # one-off URLs


def test_it_costs_the_same_however_many_webhooks_the_merchant_has(
    inspector: Inspector, merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    Endpoint.objects.bulk_create(
        Endpoint(merchant=merchant, url=f"http://127.0.0.1:9/{n}") for n in range(60)
    )
    Endpoint.objects.bulk_create(
        Endpoint(merchant=merchant, url=f"http://testserver{inspector.path}") for n in range(20)
    )
    tried: list[str] = []
    verify = signing.verify

    def counting(secret: str, *args: Any) -> bool:
        tried.append(secret)
        return verify(secret, *args)

    monkeypatch.setattr(signing, "verify", counting)
    body = b"{}"
    headers = signed_headers(signing.new_secret(), body)  # verifies with nothing
    Client().post(inspector.path, body, content_type="application/json", **headers)
    assert InspectorRequest.objects.get().signature == "invalid"
    # At most 5 pointing webhooks (current and previous secret each) and the merchant's.
    assert 1 < len(tried) <= 11
