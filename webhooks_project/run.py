"""`make run`: everything on one machine, with no configuration.

It runs the product as users should see it: DEBUG off (styled 404 and 500 pages, static files
from whitenoise, no settings or URL lists on error pages), with a secret key and an
encryption key generated once and kept under var/. `DEBUG=1 make run` is for development.

Migrates, seeds the demo merchant on first start (printing its login), then runs the
Procfile's processes through honcho: gunicorn on http://127.0.0.1:8000, delivery workers and
the scheduler, all on the embedded Redis (started here when REDIS_URL is unset). Ctrl-C stops
all of them, then the embedded Redis.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import honcho.manager
from cryptography.fernet import Fernet
from honcho.environ import expand_processes, parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer

from lib import files
from webhooks_project import config, embedded_redis

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PROCFILE = BASE_DIR / "Procfile"
# A worker finishes the requests it has in flight (up to 30 s each) before it exits; honcho's
# default of 5 s before SIGKILL would cut them off.
STOP_TIMEOUT = 40


def manage(*args: str) -> list[str]:
    return [PYTHON, str(BASE_DIR / "manage.py"), *args]


def local_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DEBUG", "0")
    if not is_debug(env):
        production_defaults(env)
    # The demo's receiver is its own inspector on this web server: exactly its address and
    # port are opened, not every local service (Send test shows what the receiver answered).
    # Production keeps https and the whole SSRF guard.
    env.setdefault("WEB_BIND", f"127.0.0.1:{env.get('PORT', '8000')}")
    host, port = demo_address(env["WEB_BIND"])
    env.setdefault("WEBHOOK_REQUIRE_HTTPS", "0")
    env.setdefault("WEBHOOK_ALLOWED_NETWORKS", host)
    env.setdefault("WEBHOOK_ALLOWED_PORTS", port)
    # Show each delivery attempt in the terminal; production workers default to WARNING.
    env.setdefault("ATTEMPT_LOG_LEVEL", "INFO")
    # The Procfile's `python` and `gunicorn` are this virtualenv's, activated or not.
    env["PATH"] = os.pathsep.join([str(Path(PYTHON).parent), env.get("PATH", os.defpath)])
    # Honcho reads the processes' output through pipes: without this, prints wait for 4 KiB.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def demo_address(bind: str) -> tuple[str, str]:
    """The network (one address) and port that the web server binds, from WEB_BIND.

    "127.0.0.1:8000" gives ("127.0.0.1/32", "8000"), "[::1]:8000" gives ("::1/128", "8000").
    """
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "localhost"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return (f"{host}/128" if ":" in host else f"{host}/32"), port


def is_debug(env: dict[str, str]) -> bool:
    return env.get("DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def production_defaults(env: dict[str, str]) -> None:
    """What DEBUG off needs on one machine, unless the environment says otherwise."""
    var = Path(env.get("VAR_DIR") or BASE_DIR / "var")
    files.private_dir(var)
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = _kept(var / "secret_key", lambda: secrets.token_urlsafe(50))
    if not env.get("FIELD_ENCRYPTION_KEY"):
        key = _kept(var / "field_encryption_key", lambda: Fernet.generate_key().decode())
        # The second key only decrypts: what DEBUG=1 runs stored in this var/ stays readable.
        env["FIELD_ENCRYPTION_KEY"] = f"{key},{config.derive_fernet_key(config.DEV_SECRET_KEY)}"
    # Plain http on this machine: no https redirect, no HSTS, cookies over http.
    for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        env.setdefault(name, "0")
    env.setdefault("SECURE_HSTS_SECONDS", "0")


def _kept(path: Path, make: Callable[[], str]) -> str:
    """A value generated on first use and read back on every later start (mode 0600)."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    files.write_private(path, value + "\n")
    return value


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    secure_var()
    env = local_env()
    workers = int(env.get("WORKERS", "1"))
    port = env.get("PORT", "8000")
    embedded = start_embedded_redis(env)
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), env=env, check=True)
    if not is_debug(env):
        # whitenoise serves the hashed, compressed copies that collectstatic writes.
        subprocess.run(manage("collectstatic", "--noinput", "-v", "0"), env=env, check=True)
    subprocess.run(manage("seed_demo"), env=env, check=True)

    honcho.manager.KILL_WAIT = STOP_TIMEOUT
    manager = Manager(Printer(sys.stdout))
    processes = parse_procfile(PROCFILE.read_text()).processes
    for process in expand_processes(processes, concurrency={"worker": workers}, env=env):
        manager.add_process(process.name, process.cmd, env=process.env, cwd=str(BASE_DIR))
    print(f"\nPOS Webhooks is running on http://127.0.0.1:{port}/ ({workers} worker(s)).")
    if not is_debug(env):
        print("DEBUG is off, as users should see it; `DEBUG=1 make run` for development.")
    print("Press Ctrl-C to stop.\n")
    try:
        manager.loop()
    finally:
        if embedded:
            embedded_redis.stop(embedded)
        print("Stopped.", flush=True)
    # Ctrl-C (SIGINT) or SIGTERM is how this is meant to end; anything else is a crash.
    return 0 if manager.returncode in (130, 143) else (manager.returncode or 1)


def secure_var() -> None:
    """var/ and everything in it for this user only, now and for what is created later.

    The umask is inherited by every process started here (migrate, gunicorn, workers, the
    embedded Redis), so SQLite's -wal and -shm and Redis's files are created private too.
    """
    os.umask(files.PRIVATE_UMASK)
    files.secure_tree(Path(os.environ.get("VAR_DIR") or BASE_DIR / "var"))


def start_embedded_redis(env: dict[str, str]) -> Path | None:
    """With REDIS_URL unset, start the embedded Redis and pass its URL to every process.

    Returns:
        The embedded Redis's directory (to stop it at the end), or None when REDIS_URL is set.
    """
    if env.get("REDIS_URL") or env.get("REDIS_SENTINELS"):
        return None
    directory = embedded_redis.directory_for(Path(env.get("VAR_DIR") or BASE_DIR / "var"))
    env["REDIS_URL"] = embedded_redis.ensure_running(directory)
    return directory


if __name__ == "__main__":
    sys.exit(main())
