#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path

# Commands that talk to Redis: with REDIS_URL unset they get the embedded one, started here
# (the settings only point at its socket). migrate, check, createsuperuser ... start nothing.
REDIS_COMMANDS = {"rqworker", "rqscheduler", "rqcron", "run_worker", "runserver", "emit_event"}


def start_embedded_redis_if_needed(argv: list[str]) -> None:
    if (
        os.environ.get("REDIS_URL")
        or os.environ.get("REDIS_SENTINELS")
        or len(argv) < 2
        or argv[1] not in REDIS_COMMANDS
    ):
        return
    from webhooks_project import embedded_redis

    base = Path(__file__).resolve().parent
    var_dir = Path(os.environ.get("VAR_DIR") or base / "var")
    os.environ["REDIS_URL"] = embedded_redis.ensure_running(embedded_redis.directory_for(var_dir))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webhooks_project.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    start_embedded_redis_if_needed(sys.argv)
    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A bad setting is the operator's to fix: one line naming it, not a traceback.
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
