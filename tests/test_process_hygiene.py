"""`make test` and `make test-postgres` leave nothing running, and a killed run blocks no
later one.

They run the suite through `python -m webhooks_project.testrun` (the Makefile's recipe);
here it runs a small part of the suite on a private VAR_DIR, and afterwards no process may
name that directory: not the test Redis, nor the PostgreSQL cluster and PgBouncer.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from webhooks_project import embedded_pgbouncer, embedded_postgres, embedded_redis, testrun

BASE = Path(__file__).resolve().parent.parent
# A quick test that loads tests/conftest.py, and so starts the suite's Redis.
QUICK = "tests/test_docs.py::test_it_starts_the_readme_with_make_run_then_make_test"
CONNECT = "import sys, psycopg; print(psycopg.connect(sys.argv[1]).execute('select 1').fetchone())"
needs_postgres = pytest.mark.skipif(
    embedded_postgres.bindir_or_none() is None
    or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin") is None,
    reason="PostgreSQL and PgBouncer are installed by `make test-postgres`",
)


@pytest.fixture
def var() -> Iterator[Path]:
    """A private VAR_DIR that the `postgres` user can reach (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="hygiene-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        testrun.stop_all(path)
        shutil.rmtree(path, ignore_errors=True)


def processes_naming(path: Path) -> list[str]:
    """The command lines of running processes that mention `path`, in their arguments or
    their environment (everything the suite started under that VAR_DIR)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(path) in command or f"VAR_DIR={path}".encode() in environ:
            found.append(command)
    return found


def suite_env(var: Path) -> dict[str, str]:
    # As a terminal starts it: not this suite's Redis or database.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    return env | {"VAR_DIR": str(var)}


def suite_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "webhooks_project.testrun", *args]


def test_it_stops_the_test_redis_when_the_suite_passes(var: Path) -> None:
    result = subprocess.run(
        suite_command(QUICK, "-q"),
        cwd=BASE,
        env=suite_env(var),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (var / "test-redis").exists()  # it did start
    assert not embedded_redis.is_running(var / "test-redis")
    assert processes_naming(var) == []


def test_it_stops_the_test_redis_when_the_suite_fails(var: Path, tmp_path: Path) -> None:
    failing = tmp_path / "test_fails_here.py"
    failing.write_text("def test_it_fails() -> None:\n    assert False\n")
    result = subprocess.run(
        suite_command(QUICK, str(failing), "-q", "--rootdir", str(BASE)),
        cwd=BASE,
        env=suite_env(var),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    assert not embedded_redis.is_running(var / "test-redis")
    assert processes_naming(var) == []


def test_it_stops_everything_on_ctrl_c(var: Path) -> None:
    # A test that runs long enough to be interrupted: the docs test starts `make run`.
    proc = subprocess.Popen(
        suite_command("tests/test_docs.py", "-q"),
        cwd=BASE,
        env=suite_env(var),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not processes_naming(var / "test-redis") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_naming(var / "test-redis"), "the suite's Redis did not start"
    time.sleep(1)  # into the test
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0, output
    assert not embedded_redis.is_running(var / "test-redis")
    deadline = time.monotonic() + 30
    while processes_naming(var) and time.monotonic() < deadline:
        time.sleep(0.2)  # gunicorn's workers exit a moment after their master
    assert processes_naming(var) == [], output


@needs_postgres
def test_it_stops_postgresql_and_pgbouncer_after_the_postgres_suite(var: Path) -> None:
    result = subprocess.run(
        suite_command("--postgres", QUICK, "tests/test_models.py", "-q", "-x"),
        cwd=BASE,
        env=suite_env(var),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (var / "postgres" / "data" / "PG_VERSION").exists()  # the cluster did run
    assert not embedded_postgres.is_running(var / "postgres")
    assert not (var / "pgbouncer" / "pgbouncer.pid").exists()
    assert processes_naming(var) == []


@needs_postgres
def test_it_starts_postgresql_and_pgbouncer_again_after_a_killed_run(var: Path) -> None:
    url = embedded_pgbouncer.start(var / "pgbouncer", embedded_postgres.start(var / "postgres"))
    postmaster = embedded_postgres.running_pid(
        var / "postgres" / "data" / "postmaster.pid", "postgres"
    )
    bouncer = embedded_postgres.running_pid(var / "pgbouncer" / "pgbouncer.pid", "pgbouncer")
    assert postmaster and bouncer
    # A run killed outright: no clean-up, pid files and sockets left behind.
    for pid in (bouncer, postmaster):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while processes_naming(var) and time.monotonic() < deadline:
        time.sleep(0.2)  # the server's children notice their parent is gone
    assert (var / "postgres" / "data" / "postmaster.pid").exists()
    assert (var / "pgbouncer" / "pgbouncer.pid").exists()

    again = embedded_pgbouncer.start(var / "pgbouncer", embedded_postgres.start(var / "postgres"))
    assert again == url
    server = again.split("?")[0].rsplit("/", 1)[0] + "/postgres"
    check = subprocess.run(
        [sys.executable, "-c", CONNECT, server], capture_output=True, text=True, timeout=60
    )
    assert check.stdout.strip() == "(1,)", check.stderr
    testrun.stop_all(var)
    assert processes_naming(var) == []


def test_it_stops_what_a_failed_ci_run_left(var: Path, tmp_path: Path) -> None:
    # A `make` that starts the suite's Redis, then fails as a failing suite would, and so
    # never stops it itself: .ci/run's trap must.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "make").write_text(
        "#!/bin/sh\n"
        f'"{sys.executable}" -c "import os, pathlib; from webhooks_project import embedded_redis;'
        " embedded_redis.ensure_running(pathlib.Path(os.environ['VAR_DIR']) / 'test-redis')\"\n"
        "exit 1\n"
    )
    (fake / "make").chmod(0o755)
    env = suite_env(var) | {"PATH": f"{fake}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(BASE / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert (var / "test-redis" / "redis.log").exists()  # the fake suite did start it
    assert not embedded_redis.is_running(var / "test-redis")
    assert processes_naming(var) == []


def test_it_stops_the_redis_that_a_bare_pytest_started(var: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", QUICK, "-q"],
        cwd=BASE,
        env=suite_env(var),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (var / "test-redis" / "redis.log").exists()
    assert processes_naming(var) == []


def test_it_runs_both_make_targets_through_the_runner_with_skip_reasons() -> None:
    planned = subprocess.run(
        ["make", "-n", "test", "test-postgres"],
        cwd=BASE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert planned.returncode == 0, planned.stderr
    recipes = planned.stdout.splitlines()
    assert any(line.endswith("-m webhooks_project.testrun ") for line in recipes), recipes
    assert any("-m webhooks_project.testrun --postgres" in line for line in recipes), recipes
    assert not any("-m pytest" in line for line in recipes), recipes
    # Skipped tests print why (-rs), in every run.
    pyproject = (BASE / "pyproject.toml").read_text()
    assert "-rs" in pyproject.split("addopts")[1].splitlines()[0]
