"""var/ is this user's only: files 0600 and directories 0700 (the SQLite database and its
-wal, the demo login, the generated keys), whatever the umask of the process that made them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from webhooks_project import run

BASE_DIR = Path(__file__).resolve().parent.parent

SCRIPT = """
import os, django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE t (x integer)")
    cursor.execute("INSERT INTO t VALUES (1)")
db = connection.settings_dict["NAME"]
for path in (db, db + "-wal", db + "-shm", os.environ["VAR_DIR"]):
    print(path, oct(os.stat(path).st_mode & 0o777))
"""


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most processes run with (files 0644), restored afterwards."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def test_it_creates_the_sqlite_database_and_its_wal_private(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webhooks_project.settings",
        "DEBUG": "1",
        "VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{var}/db.sqlite3",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        umask=0o022,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modes = dict(line.split() for line in done.stdout.splitlines())
    assert modes == {
        f"{var}/db.sqlite3": "0o600",
        f"{var}/db.sqlite3-wal": "0o600",
        f"{var}/db.sqlite3-shm": "0o600",
        str(var): "0o700",
    }


def test_it_writes_the_demo_login_private(
    db: None, settings: Any, tmp_path: Path, usual_umask: None
) -> None:
    settings.VAR_DIR = tmp_path
    call_command("seed_demo", events=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert mode(tmp_path / "demo_login.txt") == 0o600


def test_it_generates_the_keys_in_a_private_var(tmp_path: Path, usual_umask: None) -> None:
    var = tmp_path / "var"
    run.production_defaults({"VAR_DIR": str(var)})
    assert mode(var) == 0o700
    assert mode(var / "secret_key") == 0o600
    assert mode(var / "field_encryption_key") == 0o600


def test_it_makes_a_var_written_before_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, usual_umask: None
) -> None:
    var = tmp_path / "var"
    (var / "redis").mkdir(parents=True)
    os.chmod(var, 0o755)
    for name in ("db.sqlite3", "db.sqlite3-wal", "demo_login.txt", "redis/dump.rdb"):
        (var / name).write_text("x")
        os.chmod(var / name, 0o644)
    monkeypatch.setenv("VAR_DIR", str(var))
    run.secure_var()
    try:
        assert mode(var) == mode(var / "redis") == 0o700
        for name in ("db.sqlite3", "db.sqlite3-wal", "demo_login.txt", "redis/dump.rdb"):
            assert mode(var / name) == 0o600, name
        # What make run starts afterwards creates private files too.
        (var / "new").write_text("x")
        assert mode(var / "new") == 0o600
    finally:
        os.umask(0o022)
