"""`make run`: everything on one machine, with no configuration.

Migrates, seeds the demo merchant on first start, starts the embedded Redis, delivery
workers and the web server on http://127.0.0.1:8000, prints the demo login, and stops
all of them on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def manage(*args: str) -> list[str]:
    return [PYTHON, str(BASE_DIR / "manage.py"), *args]


def local_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    # The demo's receivers live on this machine; production keeps https and the SSRF guard.
    env.setdefault("WEBHOOK_REQUIRE_HTTPS", "0")
    env.setdefault("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
    return env


def main() -> int:
    env = local_env()
    workers = int(env.get("WORKERS", "1"))
    port = env.get("PORT", "8000")
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), env=env, check=True)
    subprocess.run(manage("seed_demo"), env=env, check=True)
    children = [
        subprocess.Popen(manage("run_worker", "--name", f"local-{n}"), env=env)
        for n in range(1, workers + 1)
    ]
    children.append(
        subprocess.Popen(manage("runserver", "--noreload", f"127.0.0.1:{port}"), env=env)
    )
    print(f"\nPOS Webhooks is running on http://127.0.0.1:{port}/ ({workers} worker(s)).")
    print("Press Ctrl-C to stop.\n", flush=True)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        shutdown(children, env)
    return 0


def shutdown(children: list[subprocess.Popen[bytes]], env: dict[str, str]) -> None:
    print("\nStopping...", flush=True)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 40
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    if not env.get("REDIS_URL"):
        from webhooks_project import embedded_redis

        var = Path(env.get("VAR_DIR", BASE_DIR / "var"))
        embedded_redis.stop(var / "redis")
    print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
