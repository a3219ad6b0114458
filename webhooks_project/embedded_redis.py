"""A private Redis server for machines where the operator has not configured one.

When `REDIS_URL` is unset the project runs its own `redis-server`, listening on a unix
socket under `var/redis/`, so `make run` and the test suite need no configuration. The
settings only point at that socket; `webhooks_project/run.py`, `manage.py` (for commands
that talk to Redis) and the tests' conftest start the server. Production sets `REDIS_URL`
and never reaches this module.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from lib import files

START_TIMEOUT = 10.0


def directory_for(var_dir: Path) -> Path:
    """Where the embedded Redis of a VAR_DIR keeps its socket, pid file and log."""
    return var_dir / "redis"


def socket_path(directory: Path) -> Path:
    return directory / "redis.sock"


def url_for(directory: Path) -> str:
    return f"unix://{socket_path(directory)}"


def is_running(directory: Path) -> bool:
    sock = socket_path(directory)
    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def find_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if Path(p).exists()),
        None,
    )


def ensure_running(directory: Path) -> str:
    """Start a daemonised redis-server under `directory` unless one already answers there.

    Args:
        directory: where the socket, pid file and log live.

    Returns:
        The `unix://` URL of the server.
    """
    files.private_dir(directory)
    if is_running(directory):
        return url_for(directory)
    binary = find_binary()
    if binary is None:
        print(
            "warning: REDIS_URL is not set and no redis-server binary was found; "
            "run `make run` (it installs one) or set REDIS_URL",
            file=sys.stderr,
        )
        return url_for(directory)
    socket_path(directory).unlink(missing_ok=True)
    # The database owns delivery state, so this Redis needs no persistence of its own.
    subprocess.run(
        [
            binary,
            "--port", "0",
            "--unixsocket", str(socket_path(directory)),
            "--unixsocketperm", "700",
            "--dir", str(directory),
            "--pidfile", str(directory / "redis.pid"),
            "--logfile", str(directory / "redis.log"),
            "--daemonize", "yes",
            "--save", "",
            "--appendonly", "no",
        ],
        check=True,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if is_running(directory):
            return url_for(directory)
        time.sleep(0.02)
    raise RuntimeError(f"embedded redis-server did not start; see {directory / 'redis.log'}")


def stop(directory: Path) -> None:
    """Stop the embedded server if it runs (used by `make run` on Ctrl-C and by tests)."""
    pidfile = directory / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
