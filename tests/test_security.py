"""Accounts and secrets: login lockout, encryption at rest, production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.db import connection
from django.test import Client

from accounts.models import Merchant, User
from endpoints.models import Endpoint
from tests.conftest import PASSWORD

BASE = Path(__file__).resolve().parent.parent


def login(client: Client, password: str, **headers: str) -> int:
    response = client.post(
        "/accounts/login/", {"username": "owner", "password": password}, headers=headers
    )
    return response.status_code


def test_it_locks_a_login_after_five_failures(owner: User) -> None:
    client = Client()
    # Four times the form again with its error; the fifth failure locks.
    assert [login(client, "wrong") for _ in range(5)] == [200, 200, 200, 200, 429]
    locked = client.post("/accounts/login/", {"username": "owner", "password": PASSWORD})
    assert locked.status_code == 429
    assert b"Too many failed log-ins" in locked.content
    assert "_auth_user_id" not in client.session


def test_it_cannot_be_escaped_by_changing_x_forwarded_for(owner: User) -> None:
    client = Client()
    for n in range(5):
        login(client, "wrong", **{"x-forwarded-for": f"203.0.113.{n}"})
    assert login(client, PASSWORD, **{"x-forwarded-for": "198.51.100.7"}) == 429


def test_it_lets_a_correct_password_through_before_the_limit(owner: User) -> None:
    client = Client()
    for _ in range(3):
        login(client, "wrong")
    assert login(client, PASSWORD) == 302
    assert client.session["_auth_user_id"] == str(owner.pk)


def test_it_encrypts_signing_secrets_at_rest(merchant: Merchant) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="https://example.com/x")
    endpoint.rotate_secret()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret, previous_secret FROM endpoints_endpoint WHERE id = %s", [endpoint.pk]
        )
        stored = cursor.fetchone()
        cursor.execute("SELECT webhook_secret FROM endpoints_merchant WHERE id = %s", [merchant.pk])
        stored_merchant = cursor.fetchone()[0]
    endpoint.refresh_from_db()
    assert endpoint.secret.startswith("whsec_") and endpoint.previous_secret.startswith("whsec_")
    assert stored[0].startswith("fernet:") and endpoint.secret not in stored[0]
    assert stored[1].startswith("fernet:") and endpoint.previous_secret not in stored[1]
    assert stored_merchant.startswith("fernet:")
    assert merchant.webhook_secret not in stored_merchant


def test_it_passes_the_deployment_checklist_with_production_settings(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webhooks_project.settings",
        "DEBUG": "0",
        "SECRET_KEY": "a-long-random-production-secret-key-" + "x" * 40,
        "FIELD_ENCRYPTION_KEY": "dGVzdC1rZXktb25seS1mb3ItdGhlLXRlc3Qtc3VpdGU=",
        "ALLOWED_HOSTS": "webhooks.example.com",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, str(BASE / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BASE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
