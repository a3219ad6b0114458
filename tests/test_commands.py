from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Merchant, User
from deliveries.models import Event
from endpoints.models import Endpoint
from tooling.models import Inspector

BASE = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_it_creates_a_merchant_with_a_user(db: None) -> None:
    printed = run("create_merchant", "Corner Shop", "--user", "corner", "--password", "pw-123456")
    merchant = Merchant.objects.get(name="Corner Shop")
    assert printed == merchant.public_id
    user = User.objects.get(username="corner")
    assert user.merchant == merchant
    assert user.check_password("pw-123456")


def test_it_refuses_a_taken_username(owner: User) -> None:
    with pytest.raises(CommandError, match="already exists"):
        run("create_merchant", "Other", "--user", "owner", "--password", "x")
    assert not Merchant.objects.filter(name="Other").exists()


def test_it_seeds_a_demo_merchant_once(
    db: None, settings: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.VAR_DIR = tmp_path  # type: ignore[attr-defined]
    monkeypatch.setenv("PORT", "8123")
    printed = run("seed_demo")
    match = re.search(r"user 'demo', password '([^']+)'", printed)
    assert match, printed
    demo = User.objects.get(username="demo")
    assert demo.check_password(match.group(1))
    # Its two webhooks send to its inspector on `make run`'s server, enabled from the start.
    inspector = Inspector.objects.get(merchant=demo.merchant)
    endpoints = Endpoint.objects.filter(merchant=demo.merchant)
    assert [(e.url, e.is_enabled) for e in endpoints] == [
        (f"http://127.0.0.1:8123/catch/{inspector.token}/", True)
    ] * 2
    assert Event.objects.filter(merchant=demo.merchant).count() == 5
    monkeypatch.setenv("PORT", "8124")
    again = run("seed_demo")
    assert match.group(1) in again
    assert Merchant.objects.filter(name="Demo Coffee Shop").count() == 1
    assert Inspector.objects.filter(merchant=demo.merchant).count() == 1
    assert {e.url for e in endpoints.all()} == {f"http://127.0.0.1:8124/catch/{inspector.token}/"}


def test_it_emits_an_event_from_the_command_line(merchant: Merchant) -> None:
    printed = run("emit_event", merchant.public_id, "receipts.update", '{"total": "9.99"}')
    event = Event.objects.get()
    assert printed.startswith(event.public_id)
    assert event.data == {"total": "9.99"} and event.sequence == 1


def test_it_explains_a_bad_emit(merchant: Merchant) -> None:
    with pytest.raises(CommandError, match="not valid JSON"):
        run("emit_event", merchant.public_id, "receipts.update", "{nope")
    with pytest.raises(CommandError, match="Unknown event type"):
        run("emit_event", merchant.public_id, "nope.update", "{}")
    with pytest.raises(CommandError, match="No merchant"):
        run("emit_event", "mrc_missing", "receipts.update", "{}")
    assert not Event.objects.exists()


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "webhooks_project.settings", **env}
    return subprocess.run(
        [sys.executable, str(BASE / "manage.py"), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BASE,
    )


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysqlx://nowhere/db"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"DATABASE_URL": "postgres://h/db?pgbouncer=maybe"}, "DATABASE_URL"),
        ({"DATABASE_URL": "sqlite:///db.sqlite3?pgbouncer=1"}, "DATABASE_URL"),
        ({"REDIS_URL": "", "REDIS_SENTINELS": "sentinel-a"}, "REDIS_SENTINELS"),
        ({"REDIS_URL": "", "REDIS_SENTINELS": "sentinel-a:26379"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINELS": "sentinel-a:26379", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/33"}, "WEBHOOK_ALLOWED_NETWORKS"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"DEBUG": "0", "SECRET_KEY": ""}, "SECRET_KEY"),
    ],
)
def test_it_stops_on_bad_configuration_with_one_line(
    env: dict[str, str], name: str, tmp_path: Path
) -> None:
    base = {"DEBUG": "1", "VAR_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0"}
    result = manage({**base, **env}, "check")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]


def test_it_creates_an_api_key_that_authenticates(merchant: Merchant) -> None:
    from django.test import Client

    from accounts.models import ApiKey

    raw = run("create_api_key", merchant.public_id, "--name", "Till 3")
    key = ApiKey.objects.get(merchant=merchant)
    assert key.name == "Till 3" and raw.startswith("whk_")
    assert raw not in (key.key_hash, key.prefix)  # only a hash is stored
    client = Client(headers={"authorization": f"Bearer {raw}"})
    assert client.get("/api/v1/webhooks").status_code == 200
    with pytest.raises(CommandError, match="No merchant"):
        run("create_api_key", "mrc_missing")


def test_it_starts_no_redis_when_the_settings_are_read(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DEBUG="1", VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="webhooks_project.settings")
    result = subprocess.run(
        [sys.executable, str(BASE / "manage.py"), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BASE,
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "redis").exists()


def test_it_creates_an_api_key_for_a_merchant_named_by_one_of_its_users(owner: User) -> None:
    from accounts.models import ApiKey

    raw = run("create_api_key", owner.username)
    assert raw.startswith(ApiKey.objects.get(merchant=owner.merchant).prefix)
    with pytest.raises(CommandError, match="No merchant"):
        run("create_api_key", "nobody")


def make_run_checkout_env(var: Path) -> dict[str, str]:
    """The environment of a terminal in a checkout where `make run` ran: nothing set, var/
    holding the keys that `make run` generated on its first start."""
    from webhooks_project import run as runner

    unset = {"SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE"}
    env = {k: v for k, v in os.environ.items() if k not in unset | {"REDIS_URL", "DATABASE_URL"}}
    env["VAR_DIR"] = str(var)
    with pytest.MonkeyPatch.context() as patch:
        for name in unset:
            patch.delenv(name, raising=False)
        patch.setenv("VAR_DIR", str(var))
        runner.local_env()  # what `make run` does first: generate and keep the keys
    assert (var / "secret_key").exists()
    return env


def test_it_creates_a_staff_login_in_a_make_run_checkout(tmp_path: Path) -> None:
    env = make_run_checkout_env(tmp_path)

    def manage_here(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(BASE / "manage.py"), *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=BASE,
        )

    assert manage_here("migrate", "-v", "0").returncode == 0
    created = manage_here(
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "admin@example.com",
        DJANGO_SUPERUSER_PASSWORD="a-staff-password-9",
    )
    assert created.returncode == 0, created.stderr
    assert "Superuser created successfully." in created.stdout
    # The user is in the database that `make run` serves, with that password and staff rights.
    check = manage_here(
        "shell",
        "-v",
        "0",
        "-c",
        "from accounts.models import User; u = User.objects.get(username='admin');"
        "print(u.check_password('a-staff-password-9'), u.is_staff and u.is_superuser)",
    )
    assert check.stdout.strip() == "True True", check.stderr
    assert (tmp_path / "db.sqlite3").exists()


def test_it_still_stops_without_a_secret_key_where_make_run_never_ran(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    env.update(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="webhooks_project.settings")
    result = subprocess.run(
        [sys.executable, str(BASE / "manage.py"), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BASE,
    )
    assert result.returncode == 2
    assert "SECRET_KEY" in result.stderr
    assert not (tmp_path / "secret_key").exists()
