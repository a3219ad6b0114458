"""`make test` and `make test-postgres`: the suite, and nothing it started left running.

The suite starts its own Redis (var/test-redis, from tests/conftest.py) and, on PostgreSQL,
a private cluster and PgBouncer (var/postgres, var/pgbouncer). Whether pytest passes, fails,
is stopped with Ctrl-C or with SIGTERM, this stops all three before it exits, and a cluster
or PgBouncer that a killed run left behind (a stale pid file) is started afresh.

    python -m webhooks_project.testrun [pytest arguments]              # SQLite
    python -m webhooks_project.testrun --postgres [pytest arguments]   # through PgBouncer
    python -m webhooks_project.testrun --stop                          # stop what is left
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from webhooks_project import embedded_pgbouncer, embedded_postgres, embedded_redis

BASE_DIR = Path(__file__).resolve().parent.parent


def var_dir() -> Path:
    return Path(os.environ.get("VAR_DIR") or BASE_DIR / "var")


def stop_all(var: Path) -> None:
    """Stop the suite's Redis, PgBouncer and cluster under `var`, whichever run."""
    embedded_redis.stop(var / "test-redis")
    embedded_pgbouncer.stop(var / "pgbouncer")
    if (var / "postgres" / "data").exists() and embedded_postgres.bindir_or_none():
        embedded_postgres.stop(var / "postgres")


def run_suite(args: list[str], postgres: bool) -> int:
    var = var_dir()
    env = dict(os.environ)
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        # Ctrl-C in a terminal reaches pytest too (one process group); `kill` of this
        # process alone must still stop pytest, which then runs its own teardown.
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if postgres:
            env["DATABASE_URL"] = embedded_pgbouncer.start(
                var / "pgbouncer", embedded_postgres.start(var / "postgres")
            )
        child = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=BASE_DIR, env=env)
        return child.wait()
    finally:
        # Signals that arrive now must not cut the clean-up short.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        stop_all(var)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--stop"]:
        stop_all(var_dir())
        return 0
    postgres = argv[:1] == ["--postgres"]
    return run_suite(argv[1:] if postgres else argv, postgres)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
