"""An existing database upgrades in place to the layout of one app per part of the domain.

A database made by the code of the commit before the split (its own migrations, run by its
own `manage.py`), with rows in every table, is migrated by this code; every row is still
there and reads back through the models' new apps. On SQLite, and on PostgreSQL under
`make test-postgres` (a database of its own in the same cluster).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from webhooks_project.pgbouncer.base import DatabaseCreation

BASE = Path(__file__).resolve().parent.parent
# The last commit of the two-app layout (endpoints + deliveries).
BEFORE_SPLIT = "4d65318584a048a718a959f25b2c716176f0d31c"
# Tables of migrations after the split (accounts 0003: operator keys, their Idempotency-Keys,
# sign-in links).
ADDED_LATER = {"accounts_operatorkey", "accounts_operatorrequestkey", "accounts_portallink"}
# Rows the catalogue's later data migrations add (catalogue 0002: the Platform category and
# its seven operational event types).
CATALOGUE_GREW = {"endpoints_category": 1, "endpoints_eventtype": 7}
MOVED = {
    "endpoints.merchant": "accounts.merchant",
    "endpoints.user": "accounts.user",
    "endpoints.apikey": "accounts.apikey",
    "endpoints.oauthclient": "accounts.oauthclient",
    "endpoints.category": "catalogue.category",
    "endpoints.eventtype": "catalogue.eventtype",
    "endpoints.inspector": "tooling.inspector",
    "endpoints.inspectorrequest": "tooling.inspectorrequest",
    "endpoints.loyaltyapp": "tooling.loyaltyapp",
    "endpoints.loyaltycall": "tooling.loyaltycall",
    "endpoints.endpoint": "endpoints.endpoint",
}


class MissingHistory(Exception):
    """The commit the upgrade starts from is not in the checkout and could not be fetched."""


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=300
    )


def ensure_commit(repo: Path, commit: str) -> None:
    """Make `commit` available in `repo`: a shallow clone fetches it from its remote.

    Raises:
        MissingHistory: with what was tried and what to run, when it cannot be had.
    """
    if git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0:
        return
    remotes = git(repo, "remote").stdout.split()
    tried = []
    for remote in remotes:
        fetched = git(repo, "fetch", "--quiet", "--depth=1", remote, commit)
        if fetched.returncode == 0:
            return
        tried.append(f"git fetch {remote} {commit[:7]}: {fetched.stderr.strip()}")
    shallow = git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
    raise MissingHistory(
        f"commit {commit[:7]} (the code the upgrade starts from) is not in this checkout"
        + (" (a shallow clone)" if shallow else "")
        + (f" and could not be fetched ({'; '.join(tried)})" if tried else ", which has no remote")
        + ": run `git fetch --unshallow` in a clone of the project's repository"
    )


def old_tree(repo: Path, dest: Path) -> Path:
    """The source tree of the commit before the split, from `repo`'s history."""
    ensure_commit(repo, BEFORE_SPLIT)
    archive = dest / "old.tar"
    with archive.open("wb") as out:
        result = subprocess.run(
            ["git", "-C", str(repo), "archive", BEFORE_SPLIT], stdout=out, stderr=subprocess.PIPE
        )
    if result.returncode != 0:
        raise MissingHistory(f"git archive {BEFORE_SPLIT[:7]}: {result.stderr.decode().strip()}")
    tree = dest / "old"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


@pytest.fixture
def old_code(tmp_path: Path) -> Path:
    """The source tree of the commit before the split. Never skipped: a checkout without
    that commit fetches it, or the test fails saying why."""
    try:
        return old_tree(BASE, tmp_path)
    except MissingHistory as exc:
        pytest.fail(str(exc))


def shallow_clone(tmp_path: Path) -> Path:
    """A one-commit clone of this checkout, as CI systems make them."""
    clone = tmp_path / "shallow"
    result = subprocess.run(
        ["git", "clone", "--quiet", "--depth=1", f"file://{BASE}", str(clone)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert git(clone, "cat-file", "-e", f"{BEFORE_SPLIT}^{{commit}}").returncode != 0
    return clone


def test_it_fetches_the_old_commit_into_a_shallow_clone(tmp_path: Path) -> None:
    tree = old_tree(shallow_clone(tmp_path), tmp_path)
    assert (tree / "manage.py").exists()


def test_it_says_why_when_the_old_commit_cannot_be_had(tmp_path: Path) -> None:
    clone = shallow_clone(tmp_path)
    assert git(clone, "remote", "remove", "origin").returncode == 0
    with pytest.raises(MissingHistory, match=r"a shallow clone.*git fetch --unshallow"):
        old_tree(clone, tmp_path)


@pytest.fixture
def database_url(tmp_path: Path, django_db_blocker: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty database of the kind the suite runs on."""
    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path / 'upgrade.sqlite3'}"
        return
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    with django_db_blocker.unblock(), connection._nodb_cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{name}"))
    finally:
        with django_db_blocker.unblock(), connection._nodb_cursor() as cursor:
            # Behind PgBouncer its pool still holds idle server connections to the database.
            DatabaseCreation._close_pooled_connections(cursor, name)
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')


def without_pgbouncer_flag(url: str) -> str:
    """The URL as the old code reads it: it predates `?pgbouncer=1` (psycopg refuses unknown
    options). Through PgBouncer it still works: Django's psycopg 3 cursors bind on the client
    and prepare nothing, and neither migrate nor the scripts use server-side cursors."""
    parts = urlsplit(url)
    if "pgbouncer" not in parts.query:
        return url  # untouched: urlunsplit would drop a slash of sqlite:////path
    query = "&".join(p for p in parts.query.split("&") if p and p.split("=")[0] != "pgbouncer")
    return urlunsplit(parts._replace(query=query))


def run(code: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=code, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_it_upgrades_a_database_of_the_two_app_layout_in_place(
    old_code: Path, database_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    env.update(
        DJANGO_SETTINGS_MODULE="webhooks_project.settings",
        DEBUG="1",
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=database_url,
        REDIS_URL="redis://127.0.0.1:1/0",  # nothing here may talk to Redis
        SECRET_KEY="upgrade-test-secret-key",
        FIELD_ENCRYPTION_KEY=os.environ["FIELD_ENCRYPTION_KEY"],
    )
    scripts = BASE / "tests" / "upgrade"
    old_env = {**env, "DATABASE_URL": without_pgbouncer_flag(database_url)}

    run(old_code, old_env, "manage.py", "migrate", "--noinput", "-v", "0")
    before = json.loads(run(old_code, old_env, str(scripts / "populate_old.py")).splitlines()[-1])
    ours = {
        t: n for t, n in before["counts"].items() if t.startswith(("endpoints_", "deliveries_"))
    }
    assert len(ours) == 18 and all(ours.values()), ours  # every table of the two apps has rows

    run(BASE, env, "manage.py", "migrate", "--noinput", "-v", "0")
    run(BASE, env, "manage.py", "migrate", "--check", "--noinput", "-v", "0")  # nothing left
    after = json.loads(
        run(BASE, env, str(scripts / "check_new.py"), json.dumps(before)).splitlines()[-1]
    )

    # No table was dropped and no row moved (only the migration history grew). Later
    # features' migrations add their own tables and catalogue rows, and nothing else.
    assert set(after["counts"]) - ADDED_LATER == set(before["counts"])
    changed = {
        table: (before["counts"][table], after["counts"][table])
        for table in before["counts"]
        if before["counts"][table] != after["counts"][table]
    }
    # New models add their content types and permissions: those tables only grow.
    grown = {"django_content_type", "auth_permission"}
    assert set(changed) <= {"django_migrations", *grown, *CATALOGUE_GREW}, changed
    assert all(changed[table][1] > changed[table][0] for table in grown & set(changed))
    for table, rows in CATALOGUE_GREW.items():
        if table in changed:
            assert changed[table][1] - changed[table][0] == rows, (table, changed[table])
    # Content types were relabelled, not made anew: permissions and admin history follow.
    for old, new in MOVED.items():
        assert after["content_types"][new] == before["content_types"][old], new
    assert after["group_perms"] == ["accounts.change_merchant"]
    assert after["user_perms"] == ["endpoints.view_endpoint"]
    assert after["log_entry_object"] == before["merchant"]

    assert after["password_ok"] is True
    assert after["user_merchant"] == before["merchant"]
    assert after["merchant_secret"] == before["merchant_secret"]  # still decrypts
    assert after["merchant_limits"] == [9, 7]
    assert after["endpoint_secret"] == before["endpoint_secret"]
    assert after["endpoint_types"] == ["upgrade.check"]
    assert after["endpoint_category"] == "upgrade"
    assert after["key_merchant"] == before["merchant"]
    assert after["token_merchant"] == before["merchant"]
    assert after["delivery"] == [before["event"], "upgrade.check", before["endpoint"]]
    assert after["attempts"] == 1
    assert after["idempotency"] == 1
    assert after["events"] == 1
    assert after["inspector_requests"] == 1
    assert after["loyalty"] == [1, 1]
    assert after["event_type_sample"] == {"a": 1}
    assert settings.AUTH_USER_MODEL == "accounts.User"
