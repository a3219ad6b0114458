"""Security headers (issue 14, item 9): X-Forwarded-Proto trusted only behind our proxies,
HSTS extras opt-in, no-store on API answers with a full secret, a CSP everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant, User

BASE = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "webhooks_project.settings",
    "DEBUG": "0",
    "SECRET_KEY": "a-long-random-production-secret-key-" + "x" * 40,
    "FIELD_ENCRYPTION_KEY": "dGVzdC1rZXktb25seS1mb3ItdGhlLXRlc3Qtc3VpdGU=",
    "ALLOWED_HOSTS": "webhooks.example.com",
    "REDIS_URL": "redis://127.0.0.1:1/0",
}
NAMES = ["SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD"]


def production_settings(tmp_path: Path, **env: str) -> dict[str, Any]:
    script = (
        "import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {NAMES!r}}}))"
    )
    merged = {**os.environ, **PRODUCTION, "VAR_DIR": str(tmp_path), **env}
    for name in ("TRUSTED_PROXY_COUNT", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD"):
        if name not in env:
            merged.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", script], env=merged, capture_output=True, text=True, cwd=BASE
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_trusts_x_forwarded_proto_only_behind_trusted_proxies(tmp_path: Path) -> None:
    assert production_settings(tmp_path)["SECURE_PROXY_SSL_HEADER"] is None
    behind = production_settings(tmp_path, TRUSTED_PROXY_COUNT="1")
    assert behind["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_it_redirects_plain_http_that_claims_https(db: None, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    claimed = Client().get("/accounts/login/", headers={"x-forwarded-proto": "https"})
    assert claimed.status_code == 301
    assert claimed["Location"] == "https://testserver/accounts/login/"


def test_it_makes_hsts_subdomains_and_preload_opt_in(tmp_path: Path) -> None:
    default = production_settings(tmp_path)
    assert default["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False
    assert default["SECURE_HSTS_PRELOAD"] is False
    opted = production_settings(
        tmp_path, SECURE_HSTS_INCLUDE_SUBDOMAINS="1", SECURE_HSTS_PRELOAD="1"
    )
    assert opted["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert opted["SECURE_HSTS_PRELOAD"] is True


def test_it_sends_hsts_without_the_extras_by_default(db: None, settings: Any) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000
    response = Client().get("/accounts/login/", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000"


def test_it_forbids_caching_api_answers_with_a_full_secret(merchant: Merchant) -> None:
    api = Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'POS')[1]}"})
    created = api.post(
        "/api/v1/webhooks",
        {"payload_url": "http://127.0.0.1:9/x", "events": ["receipts.update"]},
        content_type="application/json",
    )
    assert created.status_code == 201 and created.json()["webhook"]["secret"].startswith("whsec_")
    assert created["Cache-Control"] == "no-store"
    webhook_id = created.json()["webhook"]["id"]
    rotated = api.post(f"/api/v1/webhooks/{webhook_id}/rotate-secret")
    assert rotated["Cache-Control"] == "no-store"
    patched = api.patch(
        f"/api/v1/webhooks/{webhook_id}",
        {"secret": "whsec_" + "A" * 40},
        content_type="application/json",
    )
    assert patched["Cache-Control"] == "no-store"
    shown = api.get(f"/api/v1/webhooks/{webhook_id}")
    assert "****" in shown.json()["webhook"]["secret"]
    assert "no-store" not in shown.get("Cache-Control", "")


@pytest.mark.parametrize("path", ["/accounts/login/", "/api/v1/event-types", "/admin/login/"])
def test_it_sends_a_content_security_policy(db: None, path: str) -> None:
    policy = Client().get(path)["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy


def test_it_serves_the_api_docs_from_our_own_files(db: None, owner: User) -> None:
    page = Client().get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "googleapis" not in page and "<script>" not in page
    client = Client()
    client.force_login(owner)
    assert 'href="/api/docs/"' in client.get("/api-keys/").content.decode()
